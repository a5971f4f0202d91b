"""Splitting a proof-of-delivery image into journal parts and assembling them (pure)."""

from __future__ import annotations

import hashlib
import os

import pytest

from geostream import image_parts as ip
from geostream.schema import reading_problem

ID = "f" + "a" * 40
DAY = 86_400_000


def _parts(data: bytes, image_id: str = ID, kind: str = "photo") -> list[ip.Part]:
    return [ip.parse_part(a) for a in ip.split(image_id, kind, "job-1", data, "tab-1")]


def _run(parts, now=1_000, held=None):
    """Feed parts through assemble as the gateway's store would; the steps taken."""
    steps = []
    for p in parts:
        step = ip.assemble(held, p, now)
        steps.append(step)
        if step.action in ("keep", "complete"):
            data = dict(held.data) if held else {}
            data[p.index] = p.data
            held = ip.Held(p.header(), data, now)
        elif step.action == "refuse":
            held = None
    return steps


def test_split_parts_fit_the_act_envelope_and_a_batch():
    data = os.urandom(ip.PART_BYTES * 2 + 5)
    actions = ip.split(ID, "photo", "job-1", data, "tab-1")
    assert [a["image"]["index"] for a in actions] == [0, 1, 2]
    assert {a["image"]["count"] for a in actions} == {3}
    assert actions[0]["image"]["sha256"] == hashlib.sha256(data).hexdigest()
    for a in actions:  # each an act reading the gateway's envelope check takes as it is
        wire = {"q": 1, "ts": 1_700_000_000_000, "k": "act", "action": a}
        assert reading_problem(wire) is None
        assert sum(map(len, a["image"]["data"])) <= 64 * 1024 - 1024
    assert b"".join(p.data for p in _parts(data)) == data


def test_in_order_parts_complete_once_with_the_whole_image():
    data = os.urandom(ip.PART_BYTES * 3)
    steps = _run(_parts(data))
    assert [s.action for s in steps] == ["keep", "keep", "complete"]
    assert steps[-1].image == data


def test_out_of_order_and_resent_parts():
    data = os.urandom(ip.PART_BYTES + 7)
    a, b = _parts(data)
    steps = _run([b, b, a])
    assert [s.action for s in steps] == ["keep", "same", "complete"]
    assert steps[-1].image == data


def test_a_part_after_the_image_was_stored_is_a_resend():
    (p,) = _parts(b"\xff\xd8\xff" + b"x" * 10)
    assert ip.assemble(None, p, 0, stored=True).action == "same"


def test_a_single_small_image_completes_at_once():
    (p,) = _parts(b"\x89PNG" + b"y" * 100, kind="signature")
    step = ip.assemble(None, p, 0)
    assert step.action == "complete" and step.image == b"\x89PNG" + b"y" * 100


def test_same_index_with_other_bytes_is_refused():
    data = os.urandom(ip.PART_BYTES * 2)
    a, b = _parts(data)
    forged = ip.Part(a.image_id, a.kind, a.job_id, 0, a.count, a.size, a.sha256,
                     bytes(ip.PART_BYTES))
    steps = _run([a, forged])
    assert steps[1].action == "refuse" and "different bytes" in steps[1].why


def test_a_part_disagreeing_with_the_held_header_is_refused():
    a, _ = _parts(os.urandom(ip.PART_BYTES * 2))
    _, b = _parts(os.urandom(ip.PART_BYTES * 2))  # same id, another image's hash
    steps = _run([a, b])
    assert steps[1].action == "refuse" and "disagrees" in steps[1].why


def test_mismatched_hash_is_refused_when_complete():
    data = os.urandom(ip.PART_BYTES + 1)
    actions = ip.split(ID, "photo", None, data, "tab-1")
    for a in actions:
        a["image"]["sha256"] = "0" * 64
    steps = _run([ip.parse_part(a) for a in actions])
    assert [s.action for s in steps] == ["keep", "refuse"]
    assert "sha256" in steps[1].why


def test_a_gap_goes_stale_and_is_given_up():
    a, b, c = _parts(os.urandom(ip.PART_BYTES * 3))
    held = ip.Held(a.header(), {0: a.data}, 0)
    assert ip.assemble(held, c, ip.STALE_MS).action == "keep"
    assert ip.assemble(held, c, ip.STALE_MS + 1).action == "refuse"


def _action(**image) -> dict:
    (a,) = ip.split(ID, "photo", None, b"z" * 100, "tab-1")
    a["image"].update(image)
    return a


@pytest.mark.parametrize("image, why", [
    ({"id": "../etc"}, "image.id"),
    ({"kind": "video"}, "image.kind"),
    ({"size": 0}, "image.size"),
    ({"size": ip.MAX_IMAGE_BYTES + 1}, "image.size"),
    ({"count": ip.MAX_PARTS + 1}, "image.count"),
    ({"count": 2}, "image.count"),
    ({"index": 1}, "image.index"),
    ({"index": -1}, "image.index"),
    ({"index": True}, "image.index"),
    ({"sha256": "XYZ"}, "image.sha256"),
    ({"data": "eHh4"}, "image.data"),
    ({"data": ["not base64!"]}, "image.data"),
    ({"data": ["eHh4"]}, "holds 100 bytes"),
    ({"job_id": 7}, "image.job_id"),
])
def test_hostile_parts_are_refused_with_the_reason(image, why):
    with pytest.raises(ip.PartRefused, match=why.replace(".", r"\.")):
        ip.parse_part(_action(**image))


def test_a_part_whose_key_names_another_index_is_refused():
    a = _action()
    a["key"] = ip.part_key(ID, 3)
    with pytest.raises(ip.PartRefused, match="key"):
        ip.parse_part(a)


def test_split_refuses_what_it_cannot_carry():
    with pytest.raises(ValueError):
        ip.split(ID, "photo", None, b"", "tab-1")
    with pytest.raises(ValueError):
        ip.split(ID, "photo", None, bytes(ip.MAX_IMAGE_BYTES + 1), "tab-1")
    assert ip.MAX_PARTS == 512


def test_a_vehicle_may_have_a_bounded_number_of_images_open():
    full = {f"f{n:040x}": 1_000 for n in range(ip.MAX_OPEN_IMAGES)}
    stale, why = ip.admit(full, ID, 2_000)
    assert stale == [] and "being assembled" in why
    one = next(iter(full))
    assert ip.admit(full, one, 2_000) == ([], ""), "a part of an open image goes on"
    # a week later they are all stale: given up, and the new image may start
    stale, why = ip.admit(full, ID, 1_000 + ip.STALE_MS + 1)
    assert sorted(stale) == sorted(full) and why == ""
    assert ip.admit({}, ID, 0) == ([], "")
