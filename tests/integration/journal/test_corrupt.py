"""Start-up with a damaged journal: quick_check, move aside (kept), new epoch, no crash loop."""

from __future__ import annotations

import os

from agent.journal import Journal
from tests.integration.journal.conftest import T0, pos, sig


def _filled(path, n=3000) -> int:
    j = Journal(path)
    j.append([sig(T0 + i) if i % 2 else pos(T0 + i) for i in range(n)])
    epoch = j.epoch
    j.close()  # checkpoints the WAL into the main file
    return epoch


def _asides(directory) -> list[str]:
    return sorted(f for f in os.listdir(directory) if ".corrupt-" in f)


def test_garbage_file_is_moved_aside_and_a_new_epoch_starts(tmp_path):
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not a database" * 200)
    j = Journal(str(path))
    assert j.moved_aside and os.path.exists(j.moved_aside)
    with open(j.moved_aside, "rb") as f:
        assert f.read(22) == b"this is not a database"  # kept for support, untouched
    assert j.next_seq == 1 and j.epoch > 0
    assert j.append([pos(T0)]) == [1]
    j.close()
    # the next start finds a healthy journal: no second move, same epoch (no crash loop)
    j2 = Journal(str(path))
    assert j2.moved_aside is None and j2.next_seq == 2
    j2.close()
    assert len(_asides(tmp_path)) == 1


def test_damaged_btree_fails_quick_check(tmp_path):
    path = str(tmp_path / "journal.sqlite")
    old_epoch = _filled(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # smash pages in the middle of the readings table
        f.seek(4096 * 6)
        f.write(b"\xff" * 4096 * 3)
    assert os.path.getsize(path) == size
    j = Journal(path)
    assert j.moved_aside is not None
    assert j.epoch != old_epoch, "a recreated journal must never reuse (epoch, seq)"
    assert j.stats().pending == 0
    j.close()
    assert len(_asides(tmp_path)) == 1


def test_truncated_file_is_handled(tmp_path):
    path = str(tmp_path / "journal.sqlite")
    _filled(path)
    with open(path, "r+b") as f:
        f.truncate(4096 * 3)
    j = Journal(path)
    assert j.moved_aside is not None
    assert j.append([pos(T0)]) == [1]
    j.close()


def test_healthy_journal_is_never_moved(tmp_path):
    path = str(tmp_path / "journal.sqlite")
    epoch = _filled(path, 100)
    for _ in range(3):
        j = Journal(path)
        assert j.moved_aside is None and j.epoch == epoch and j.next_seq == 101
        j.close()
    assert _asides(tmp_path) == []
