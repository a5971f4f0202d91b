"""The frame decoder gives the same messages (and the same refusals) however the stream is cut:
one whole message per piece (its fast path), several per piece, a message over several."""

import random

import pytest

from geostream.codec import FrameDecoder, encode
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Ack, Batch, Command, Error


def messages(rng: random.Random) -> list:
    out = []
    for i in range(60):
        kind = rng.random()
        if kind < 0.5:
            out.append(Ack(epoch=3, through=i, ranges=((i + 2, i + 4),) if i % 3 else (),
                           credit=rng.randint(0, 500)))
        elif kind < 0.8:
            out.append(Batch(epoch=3, readings=tuple(
                {"q": q, "ts": 1_790_000_000_000 + q, "k": "pos", "lat": 53.5, "lon": 9.9}
                for q in range(i, i + rng.randint(1, 5)))))
        elif kind < 0.9:
            out.append(Command(id=i, name="ping", args={}))
        else:
            out.append(Error(code=5, reason="x" * rng.randint(0, 40), fatal=False))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_any_cut_of_the_stream_gives_the_same_messages(seed):
    rng = random.Random(seed)
    msgs = messages(rng)
    frames = [encode(m) for m in msgs]
    whole = FrameDecoder()
    assert [x for f in frames for x in whole.feed(f)] == msgs  # one message per piece
    stream = b"".join(frames)
    cut = FrameDecoder()
    got, at = [], 0
    while at < len(stream):
        n = rng.choice([1, 3, 50, 400, len(stream)])
        got += cut.feed(stream[at:at + n])
        at += n
    assert got == msgs and cut.buffered == 0 and whole.buffered == 0


def test_a_whole_frame_beyond_the_bound_is_refused_as_when_cut():
    big = encode(Batch(epoch=1, readings=({"q": 1, "ts": 1, "k": "pos", "lat": 1.0,
                                           "lon": 2.0},)))
    for pieces in ([big], [big[:3], big[3:]]):
        dec = FrameDecoder(max_message_bytes=len(big) - 5)
        with pytest.raises(ProtocolError) as err:
            for p in pieces:
                dec.feed(p)
        assert err.value.code == ErrorCode.TOO_LARGE
