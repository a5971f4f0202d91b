"""A batch written around its readings' CBOR (`batch_payload`, `encode_batch`, the journal's
`encoded_rows`) is byte for byte the batch the reference encoder writes from the reading maps
(`geostream.codec.encode(Batch(...))` of `agent.journal_drain.wire_rows`), in every compression
shape, and a session sends either form as the same frame."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import cbor2
import pytest

from agent.journal_drain import encoded_rows, wire_rows
from agent.readings import Event, Position, Signals
from agent.wire_encode import encode as encode_reading
from geostream.codec import (
    EncodedReadings,
    batch_payload,
    cbor_head,
    encode,
    encode_batch,
    encode_payload,
)
from geostream.deflate import (
    LEVEL,
    SMALL_BYTES,
    WINDOW_BITS,
    Deflater,
    DictionaryDeflater,
    inflate_alone,
    mem_level_for,
)
from geostream.messages import Batch, Welcome
from geostream.session import ClientSession
from geostream.zdict import DICTIONARIES


def random_rows(rng: random.Random, n: int) -> list[tuple[int, bytes]]:
    """(seq, stored payload) as the agent's journal keeps them: positions, CAN snapshots of
    up to 30 signals, events, and now and then a map of more than 23 pairs."""
    rows = []
    seq = rng.randrange(1, 2**40)
    for _ in range(n):
        seq += rng.randint(1, 3)
        ts = rng.randrange(0, 2**45)
        kind = rng.random()
        if kind < 0.5:
            r = Position(ts, rng.uniform(-90, 90), rng.uniform(-180, 180),
                         speed_kmh=rng.choice([None, rng.uniform(0, 200)]),
                         sats=rng.choice([None, rng.randint(0, 40)]))
        elif kind < 0.9:
            r = Signals(ts, "can0", {f"S{i}": rng.choice([rng.random(), rng.randint(-9, 10**9)])
                                     for i in range(rng.randint(0, 30))})
        elif kind < 0.97:
            r = Event(ts, "journal", {"n": rng.randint(0, 99)})
        else:  # a map of more than 23 pairs (a longer head): no reading kind makes one today
            rows.append((seq, cbor2.dumps({f"k{i}": i for i in range(rng.randint(22, 30))})))
            continue
        rows.append((seq, encode_reading(r)))
    return rows


@pytest.mark.parametrize("seed", range(8))
def test_encoded_rows_are_the_wire_maps_encoded(seed):
    rng = random.Random(seed)
    for n in (0, 1, 2, rng.randint(3, 40), 300):
        rows = random_rows(rng, n)
        enc = encoded_rows(rows)
        assert enc.cbor == cbor2.dumps(wire_rows(rows))
        assert enc.seqs == tuple(q for q, _ in rows) and len(enc) == n


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_around_its_readings_is_the_reference_batch(seed):
    rng = random.Random(seed)
    for _ in range(20):
        rows = random_rows(rng, rng.randint(1, 40))
        readings = wire_rows(rows)
        plain = encoded_rows(rows).cbor
        epoch = rng.choice([0, 23, 24, 2**31, 2**40])
        vehicle = rng.choice([None, "truck-7"])
        batch = Batch(epoch=epoch, readings=tuple(readings), vehicle=vehicle)
        assert batch_payload(epoch, plain, None, vehicle) == encode_payload(batch)
        dictionary = DictionaryDeflater(max(DICTIONARIES))
        assert batch_payload(epoch, plain, dictionary, vehicle) == encode_payload(batch,
                                                                                  dictionary)
        stream = Deflater()
        stream.piece(cbor2.dumps([{"q": 1}]))  # a stream with history
        assert batch_payload(epoch, plain, stream.copy(), vehicle) == encode_payload(
            batch, stream.copy())
        if vehicle is None:
            assert encode_batch(epoch, plain, dictionary) == encode(batch, dictionary)


def test_a_dictionary_piece_is_what_a_fresh_compressor_writes():
    rng = random.Random(3)
    deflater = DictionaryDeflater(max(DICTIONARIES))
    sizes = set()
    for _ in range(80):
        data = encoded_rows(random_rows(rng, rng.choice([1, 2, 3, rng.randint(1, 60)]))).cbor
        sizes.add(len(data) <= SMALL_BYTES)
        fresh = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, mem_level_for(len(data)),
                                 zdict=DICTIONARIES[max(DICTIONARIES)])
        assert deflater.piece(data) == fresh.compress(data) + fresh.flush(zlib.Z_FINISH)
    assert sizes == {True, False}  # both compressors were used


def test_a_live_batch_is_compressed_without_copying_the_large_tables():
    """A one-reading batch's piece allocates a memLevel-4 compressor's tables (~30 KiB), not
    memLevel 8's (~150 KiB, what every live batch copied before; with zlib's 32 KiB output
    buffer the peak was 186 KiB, now 64 KiB); it inflates to its data."""
    deflater = DictionaryDeflater(max(DICTIONARIES))
    data = encoded_rows(random_rows(random.Random(5), 1)).cbor
    assert len(data) <= SMALL_BYTES
    deflater.piece(data)  # the primed compressors exist
    tracemalloc.start()
    try:
        piece = deflater.piece(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 96 * 1024
    assert inflate_alone(piece, max(DICTIONARIES), SMALL_BYTES) == data


@pytest.mark.parametrize("welcome", [
    Welcome(credit=500, max_batch_bytes=65536, time=1, zdict=max(DICTIONARIES)),
    Welcome(credit=500, max_batch_bytes=65536, time=1, z=True),
    Welcome(credit=500, max_batch_bytes=65536, time=1)])
def test_a_session_sends_encoded_readings_as_it_sends_their_maps(welcome):
    rng = random.Random(9)
    maps, encoded = ClientSession("v", "t", 4), ClientSession("v", "t", 4)
    for s in (maps, encoded):
        s.receive(encode(welcome))
        s.data_to_send()
    for _ in range(30):
        rows = random_rows(rng, rng.randint(1, 20))
        enc = encoded_rows(rows)
        assert encoded.batch_size(enc) == maps.batch_size(wire_rows(rows))
        assert encoded.send_batch(enc) == maps.send_batch(wire_rows(rows))
        assert encoded.data_to_send() == maps.data_to_send()
        assert encoded.in_flight == maps.in_flight
    assert isinstance(enc, EncodedReadings)


_EDGES = (0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1)


def test_a_cbor_head_is_the_head_cbor2_writes_at_every_length_edge():
    # each major type's argument at the edges of its 1-, 2-, 3-, 5- and 9-byte forms
    for n in _EDGES:
        assert cbor_head(0x00, n) == cbor2.dumps(n)
        assert cbor_head(0x20, n) == cbor2.dumps(-1 - n)
        if n <= 65536:
            assert cbor_head(0x40, n) == cbor2.dumps(bytes(n))[:-n or None]
            assert cbor_head(0x80, n) == cbor2.dumps([0] * n)[:-n or None]


def test_one_row_is_the_wire_map_encoded_at_every_sequence_edge():
    # a live batch (one row) is written by its own shortcut in `encoded_rows`
    payload = encode_reading(Position(1_790_000_000_000, 53.5, 9.9, speed_kmh=12.5))
    for seq in _EDGES:
        enc = encoded_rows([(seq, payload)])
        assert enc.cbor == cbor2.dumps(wire_rows([(seq, payload)])) and enc.seqs == (seq,)
