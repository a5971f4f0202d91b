"""Disk trouble: ENOSPC on a real 2 MB tmpfs, a read-only remount, and a mocked EIO.

The journal must keep running, hold the newest readings in bounded memory, log once per state
change, and commit what it held when the disk recovers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess

import cbor2
import pytest

from agent import journal as jmod
from agent.journal import Journal
from tests.integration.journal.conftest import T0, integrity, pos, raw_seqs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def skip_retry(self) -> None:
        self.now += jmod.RETRY_INTERVAL_S + 0.1


@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MB tmpfs (root only); skipped where mounting is impossible — the mocked EIO
    test below covers the same code path everywhere."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _remount(mnt, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True)


def _payloads(path) -> list[tuple[int, dict]]:
    db = sqlite3.connect(path)
    try:
        return [(q, cbor2.loads(p)) for q, p in
                db.execute("SELECT seq, payload FROM readings ORDER BY seq")]
    finally:
        db.close()


def _log_lines(caplog, level) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "agent.journal" and r.levelno == level]


def test_disk_full_holds_newest_in_memory_and_recovers(small_fs, caplog):
    caplog.set_level(logging.INFO, logger="agent.journal")
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * 600_000)  # freed later: the "disk recovers"
    clock = Clock()
    path = str(small_fs / "journal.sqlite")
    j = Journal(path, max_mb=0, memory_readings=500, monotonic=clock)
    accepted: list[int] = []
    ts = T0
    full_at = None
    for i in range(400):  # fill the file system until a commit fails
        seqs = j.append([pos(ts := ts + 100) for _ in range(50)])
        if not seqs:
            full_at = i
            break
        accepted.extend(seqs)
    assert full_at is not None, "the 2 MB file system never filled up"
    assert j.stats().state == "degraded"
    # keep producing while the disk is full: nothing raises, memory stays bounded
    for _ in range(30):
        assert j.append([pos(ts := ts + 100) for _ in range(50)]) == []
        clock.skip_retry()  # retries happen and fail again
    assert j.stats().held == 500
    last_ts = ts
    assert len(_log_lines(caplog, logging.ERROR)) == 1, "one log line per state change"
    filler.unlink()
    clock.skip_retry()
    seqs = j.append([])
    assert len(seqs) == 501  # the 500 held readings and one journal-dropped event
    assert j.stats().state == "ok" and j.stats().held == 0
    assert len(_log_lines(caplog, logging.WARNING)) == 2  # back, and "dropped ... (memory)"
    j.close()
    rows = _payloads(path)
    assert [q for q, _ in rows] == accepted + seqs  # nothing accepted was lost
    held = [w for q, w in rows if q in seqs and w["k"] == "pos"]
    # the newest 500 readings were kept, in order, and the held ones end at the last produced
    assert len(held) == 500 and held[-1]["ts"] == last_ts
    assert [w["ts"] for w in held] == sorted(w["ts"] for w in held)
    event = rows[-1][1]
    assert event["name"] == "journal-dropped" and event["data"]["reason"] == "memory"
    produced_while_down = 50 + 30 * 50
    assert event["data"]["counts"] == {"pos": produced_while_down - 500}
    assert integrity(path) == "ok"


@pytest.fixture
def ext4_fs(tmp_path):
    """A real 16 MB ext4 on a loop device with errors=remount-ro, like an SD card's root."""
    img, mnt = tmp_path / "fs.img", tmp_path / "ext4"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "16M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, capture_output=True)

    def mount():
        return subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(img), str(mnt)],
                              capture_output=True).returncode == 0

    if not mount():
        pytest.skip("cannot loop-mount an ext4 image here (needs root and loop devices)")
    try:
        yield mnt, img, mount
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_fs_error_remounts_read_only_then_disk_comes_back(ext4_fs, caplog):
    """The kernel remounts the file system read-only under the running journal (as ext4 does
    on an I/O error); later the storage is repaired and mounted again."""
    mnt, img, mount = ext4_fs
    caplog.set_level(logging.INFO, logger="agent.journal")
    clock = Clock()
    path = str(mnt / "journal.sqlite")
    j = Journal(path, monotonic=clock)
    first = j.append([pos(T0 + i) for i in range(10)])
    epoch = j.epoch
    dev = os.path.basename(subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mnt)],
                                          capture_output=True, text=True).stdout.strip())
    trigger = f"/sys/fs/ext4/{dev}/trigger_fs_error"
    if not os.path.exists(trigger):
        pytest.skip("this kernel cannot trigger an ext4 error")
    with open(trigger, "w") as f:
        f.write("1")
    assert j.append([pos(T0 + 100 + i) for i in range(10)]) == []
    assert j.degraded
    clock.skip_retry()
    assert j.append([pos(T0 + 200)]) == []  # a retry while still read-only
    assert j.batch_after(0, 100, 65536) == []  # reads do not raise either
    # repair: the journal closed its files when it degraded, so a plain umount works
    subprocess.run(["umount", str(mnt)], check=True)
    subprocess.run(["e2fsck", "-fy", str(img)], capture_output=True)
    assert mount()
    clock.skip_retry()
    later = j.append([pos(T0 + 300)])
    assert len(later) == 12 and not j.degraded
    assert j.epoch == epoch, "the same journal came back: same epoch"
    assert len(_log_lines(caplog, logging.ERROR)) == 1
    j.close()
    assert raw_seqs(path) == first + later


def test_start_on_read_only_storage_is_not_corruption(small_fs):
    """Boot with the storage read-only: no crash, no move-aside; journaling starts later."""
    clock = Clock()
    path = str(small_fs / "journal.sqlite")
    j = Journal(path)
    seqs = j.append([pos(T0)])
    epoch = j.epoch
    j.close()
    _remount(small_fs, "ro")
    try:
        j = Journal(path, monotonic=clock)  # must not raise, must not move the file aside
        assert j.moved_aside is None
        assert j.append([pos(T0 + 1)]) in ([], [2])
    finally:
        _remount(small_fs, "rw")
    clock.skip_retry()
    j.append([pos(T0 + 2)])
    assert not j.degraded and j.epoch == epoch
    j.close()
    assert sorted(os.listdir(small_fs)) == ["journal.sqlite"]
    assert raw_seqs(path)[: len(seqs)] == seqs and len(raw_seqs(path)) == 3


def test_mocked_eio_degrades_then_recovers(jpath, mocker, caplog):
    """Where no file system can be mounted: an EIO from SQLite, injected at commit."""
    caplog.set_level(logging.INFO, logger="agent.journal")
    clock = Clock()
    j = Journal(jpath, monotonic=clock)
    j.append([pos(T0)])
    eio = sqlite3.OperationalError("disk I/O error")
    eio.sqlite_errorcode = 778  # SQLITE_IOERR_WRITE
    real = j._commit
    mocker.patch.object(j, "_commit", side_effect=eio)
    assert j.append([pos(T0 + 1)]) == []
    clock.skip_retry()
    assert j.append([pos(T0 + 2)]) == []
    mocker.patch.object(j, "_commit", side_effect=real)
    assert j.append([pos(T0 + 3)]) == []  # still waiting for the retry time
    clock.skip_retry()
    assert j.append([pos(T0 + 4)]) == [2, 3, 4, 5]
    assert len(_log_lines(caplog, logging.ERROR)) == 1
    j.close()
    assert raw_seqs(jpath) == [1, 2, 3, 4, 5]


def test_programming_errors_are_not_swallowed(jpath, mocker):
    j = Journal(jpath)
    mocker.patch.object(j, "_commit", side_effect=sqlite3.OperationalError("no such table: x"))
    with pytest.raises(sqlite3.OperationalError):
        j.append([pos(T0)])
    mocker.stopall()
    j.close()
