"""The CID relay's decisions (backend/cluster/relay.py), sans-IO: which member is told of a
CID, what a member relays, the messages' round trips and their refusals."""

from __future__ import annotations

import os

import pytest

from backend.cluster.cids import CidLayout
from backend.cluster.relay import (
    ISSUED,
    KIND_CIDS,
    MAX_MESSAGE_BYTES,
    RETIRED,
    RelayBook,
    decode_cids,
    decode_datagram,
    encode_cids,
    encode_datagram,
    steered_to,
)
from backend.cluster.reuseport import select


def _cid_steered_to(member: int, group: int) -> bytes:
    for _ in range(1000):  # bounded: each random CID lands on `member` with 1/group
        cid = os.urandom(8)
        if steered_to(cid, group) == member:
            return cid
    raise AssertionError("no CID found")


def test_the_kernels_member_for_a_cid_is_the_steering_programs():
    for _ in range(200):
        cid = os.urandom(8)
        assert steered_to(cid, 3) == select(b"\x40" + cid + b"payload", 3)
    assert steered_to(CidLayout().encode(1), 2) == 1, "a CID with the server id: its member"


def test_an_owner_announces_only_what_the_kernel_steers_elsewhere_and_only_there():
    book = RelayBook(member=0, group=3)
    mine, to1, to2 = (_cid_steered_to(m, 3) for m in (0, 1, 2))
    for cid in (mine, CidLayout().encode(0), to1, to2, to1):  # to1 twice: once
        book.issued(cid)
    sent = book.take_pending()
    assert set(sent) == {1, 2}
    assert decode_cids(sent[1][0]) == [(ISSUED, to1)]
    assert decode_cids(sent[2][0]) == [(ISSUED, to2)]
    assert book.take_pending() == {}, "sent once"
    book.retired(mine)  # never announced: nothing to say
    book.retired(to2)
    assert {m: [decode_cids(x) for x in msgs] for m, msgs in book.take_pending().items()} == \
        {2: [[(RETIRED, to2)]]}


def test_a_sibling_relays_what_was_announced_to_it_until_retired():
    owner, relay = RelayBook(0, 2), RelayBook(1, 2)
    cid = _cid_steered_to(1, 2)
    owner.issued(cid)
    for message in owner.take_pending()[1]:
        relay.received_cids(0, message)
    assert relay.owner(cid) == 0
    assert relay.owner(os.urandom(8)) is None
    owner.retired(cid)
    for message in owner.take_pending()[1]:
        relay.received_cids(0, message)
    assert relay.owner(cid) is None


def test_a_retirement_from_another_sibling_does_not_move_a_cid():
    relay = RelayBook(2, 3)
    cid = os.urandom(8)
    relay.received_cids(0, encode_cids([(ISSUED, cid)])[0])
    relay.received_cids(1, encode_cids([(RETIRED, cid)])[0])
    assert relay.owner(cid) == 0


def test_a_restarted_sibling_is_forgotten_and_told_again():
    book = RelayBook(0, 2)
    theirs, ours = os.urandom(8), _cid_steered_to(1, 2)
    book.received_cids(1, encode_cids([(ISSUED, theirs)])[0])
    book.issued(ours)
    book.take_pending()
    again = book.hello_from(1)
    assert book.owner(theirs) is None, "its connections died with it"
    assert [decode_cids(m) for m in again] == [[(ISSUED, ours)]]


def test_the_table_is_bounded():
    book = RelayBook(0, 2, max_relayed=3)
    cids = [os.urandom(8) for _ in range(5)]
    book.received_cids(1, encode_cids((ISSUED, c) for c in cids)[0])
    assert sum(book.owner(c) is not None for c in cids) == 3
    assert book.stats["refused"] == 2


def test_many_announcements_split_into_bounded_messages():
    cids = [os.urandom(8) for _ in range(3000)]
    messages = encode_cids((ISSUED, c) for c in cids)
    assert len(messages) > 1 and all(len(m) <= MAX_MESSAGE_BYTES for m in messages)
    assert [c for m in messages for _, c in decode_cids(m)] == cids


@pytest.mark.parametrize("bad", [
    bytes([KIND_CIDS, ISSUED]),  # truncated entry
    bytes([KIND_CIDS, 7, 8]) + b"x" * 8,  # unknown op
    bytes([KIND_CIDS, ISSUED, 0]),  # empty CID
    bytes([KIND_CIDS, ISSUED, 21]) + b"x" * 21,  # longer than QUIC allows
    bytes([KIND_CIDS, ISSUED, 8]) + b"x" * 7,  # shorter than it says
])
def test_malformed_announcements_change_nothing(bad):
    book = RelayBook(0, 2)
    book.received_cids(1, bad)
    assert book.relayed == {} and book.stats["malformed"] == 1


@pytest.mark.parametrize("addr", [("192.0.2.7", 50000), ("2001:db8::1", 443, 0, 0),
                                  ("fe80::1", 4433, 0, 3)])
def test_a_relayed_datagram_keeps_its_bytes_and_address(addr):
    data = os.urandom(1200)
    assert decode_datagram(encode_datagram(data, addr)) == (data, addr)


@pytest.mark.parametrize("bad", [b"\x03", b"\x03\x05" + b"x" * 30, b"\x03\x04abc",
                                 b"\x03\x06" + b"x" * 10])
def test_a_malformed_relayed_datagram_is_refused(bad):
    with pytest.raises(ValueError):
        decode_datagram(bad)
