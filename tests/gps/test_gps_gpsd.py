"""The gpsd JSON source, against a small fake gpsd on a real 127.0.0.1 socket."""

import asyncio
import datetime as dt
import json
import time

import pytest

from agent.gps.gpsd import WATCH, GpsdDecoder, GpsdSource

pytestmark = pytest.mark.timeout(60)


def tpv(second: int, mode: int = 3, **extra) -> bytes:
    rep = {"class": "TPV", "device": "/dev/ttyACM0", "mode": mode, "status": 2,
           "time": f"2026-11-23T12:00:{second:02d}.000Z", "lat": 48.1 + second * 1e-4,
           "lon": 11.5, "altMSL": 520.5, "speed": 10.0, "track": 91.5, **extra}
    if mode < 2:
        for key in ("lat", "lon", "altMSL", "speed", "track"):
            rep.pop(key)
    return json.dumps(rep).encode() + b"\n"


SKY = json.dumps({"class": "SKY", "hdop": 0.8, "satellites": [
    {"PRN": 5, "used": True}, {"PRN": 7, "used": True}, {"PRN": 9, "used": False}]}).encode()


def test_decoder_maps_tpv_and_sky_to_position():
    dec = GpsdDecoder()
    out = dec.feed(SKY + b"\n" + tpv(1)[:40], host_time_ms=1)
    t1 = int(dt.datetime(2026, 11, 23, 12, 0, 1, tzinfo=dt.UTC).timestamp()) * 1000
    out += dec.feed(tpv(1)[40:], host_time_ms=t1 + 500)
    assert len(out) == 1
    p = out[0]
    assert p.ts_ms == t1 and p.lat == 48.1001 and p.lon == 11.5
    assert p.speed_kmh == 36.0 and p.course_deg == 91.5 and p.alt_m == 520.5
    assert p.fix == 2 and p.mode == 3 and p.sats == 2 and p.hdop == 0.8
    assert p.clock_offset_ms == 500


def test_decoder_rejects_without_raising():
    dec = GpsdDecoder()
    bad = [b"{not json\n", b"[1,2]\n", tpv(1, mode=1), tpv(2, lat=float("nan")),
           tpv(3, lat=95.0), tpv(4, time="yesterday"), tpv(5, lat="48.1"),
           b"x" * 70_000]
    out = [p for chunk in bad for p in dec.feed(chunk)]
    assert out == []
    assert dec.counts["bad_json"] == 2 and dec.counts["no_fix"] == 1
    assert dec.counts["bad_field"] == 4 and dec.counts["overlong"] == 1
    assert dec.feed(b"\n" + tpv(6))[0].ts_ms % 60_000 == 6000  # recovers afterwards


async def test_source_watches_reconnects_and_emits():
    watches: list[bytes] = []
    connections = 0

    async def fake_gpsd(reader, writer):
        nonlocal connections
        connections += 1
        watches.append(await reader.readline())
        writer.write(b'{"class":"VERSION","release":"3.25","proto_major":3}\n')
        writer.write(b'{"class":"DEVICES","devices":[{"path":"/dev/ttyACM0"}]}\n')
        if connections == 1:
            writer.write(SKY + b"\n" + tpv(0, mode=1) + b"garbage\n" + tpv(1) + tpv(2))
            await writer.drain()
            writer.close()  # gpsd restarted
            return
        writer.write(tpv(3) + tpv(4))
        await writer.drain()
        await asyncio.sleep(30)

    server = await asyncio.start_server(fake_gpsd, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got = []
    src = GpsdSource("127.0.0.1", port, reopen_min_s=0.05)
    task = asyncio.create_task(src.run(got.append))
    try:
        deadline = time.monotonic() + 10
        while len(got) < 4:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert [p.ts_ms % 60_000 for p in got] == [1000, 2000, 3000, 4000]
        assert watches == [WATCH, WATCH]
        status = src.status()
        assert status["state"] == "fix" and status["opens"] == 2
        assert status["no_fix"] == 1 and status["bad_json"] == 1
        json.dumps(status)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.close()


async def test_source_reports_no_device_when_gpsd_is_absent():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    src = GpsdSource("127.0.0.1", port, reopen_min_s=0.01, reopen_max_s=0.02)
    task = asyncio.create_task(src.run(lambda r: None))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert src.state == "down" and src.counts["open_failures"] >= 3
