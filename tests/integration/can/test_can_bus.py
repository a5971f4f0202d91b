"""Live sources: python-can `virtual` in-process, SLCAN on a pty from another process."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import can
import pytest

from agent.can.dbcload import load_dbc
from agent.can.decoder import CanDecoder
from agent.can.select import Selector
from agent.can.source import CanBusSource, CanPipeline
from tests.integration.can.can_helpers import (
    TRUCK,
    assert_values_equal,
    message_values,
    mux_variants,
)

REPO = Path(__file__).resolve().parents[3]


def source(interface, channel, selection=None, **kw):
    pipe = CanPipeline("truck", CanDecoder([load_dbc(TRUCK)], selection), Selector())
    return CanBusSource("can:truck", pipe, interface, channel, kw)


async def wait_for(predicate, timeout):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_virtual_bus_every_truck_message_round_trips():
    src = source("virtual", "fleet-test-rt")
    out = []
    task = asyncio.create_task(src.run(out.append))
    try:
        await wait_for(lambda: src.state == "up", 5)
        db = load_dbc(TRUCK)
        rng = random.Random(11)
        expected = []
        with can.Bus(interface="virtual", channel="fleet-test-rt") as tx:
            for message in db.messages:
                for mux in mux_variants(message):
                    encode, expect = message_values(message, mux, rng)
                    sa = rng.randrange(256)
                    arb = (message.frame_id & ~0xFF) | sa
                    tx.send(can.Message(arbitration_id=arb, is_extended_id=True,
                                        data=message.encode(encode)))
                    expected.append(expect)
            tx.send(can.Message(arbitration_id=0x123, data=b"\x01"))
            tx.send(can.Message(arbitration_id=0x0CF00400, is_extended_id=True, data=b"\x01\x02"))
            await wait_for(lambda: src.status()["frames"] == len(expected) + 2, 5)
            tx.send(can.Message(arbitration_id=0x40, is_error_frame=True, data=bytes(8)))
            await wait_for(lambda: src.state == "bus-off", 5)
            tx.send(can.Message(arbitration_id=0x123, data=b"\x01"))
            await wait_for(lambda: src.state == "up", 5)
        assert len(out) == len(expected)
        for reading, expect in zip(out, expected, strict=True):
            assert reading.bus == "truck"
            assert_values_equal(reading.values, expect)
        st = src.status()
        assert st["state"] == "up" and st["unknown_id"] == 2 and st["bad_dlc"] == 1
        assert st["error_frames"] == 1 and st["bus_off"] == 1
        assert st["opens"] == 1 and st["readings"] == len(expected)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_open_failure_retries_with_backoff():
    src = source("slcan", "/nonexistent/tty-for-fleet-test")
    task = asyncio.create_task(src.run(lambda r: None))
    try:
        await wait_for(lambda: src.counts["open_failures"] >= 2, 5)
        assert src.state == "down" and src.counts["opens"] == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_slcan_from_another_process_then_device_gone():
    gen = subprocess.Popen(
        [sys.executable, str(REPO / "hil" / "can_gen.py"), "--pty", "--duration", "3",
         "--speed", "1", "--open-timeout", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = gen.stdout.readline().strip()
        assert path.startswith("/dev/")
        src = source("slcan", path, {"CCVS1": {"WheelBasedVehicleSpeed": "speed"}},
                     bitrate=250000, sleep_after_open=0)
        out = []
        task = asyncio.create_task(src.run(out.append))
        try:
            await wait_for(lambda: len(out) >= 5, 10)
            assert all(r.values.keys() == {"speed"} and r.values["speed"] == 0.0 for r in out)
            assert src.status()["unselected"] > 0
            # the generator ends after 3 s and its pty disappears: the source goes down
            await wait_for(lambda: src.state == "down", 10)
            await wait_for(lambda: src.counts["open_failures"] >= 1, 10)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        gen.kill()
        gen.wait(5)
