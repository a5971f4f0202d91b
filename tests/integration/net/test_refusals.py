"""Refusals with the documented error codes (docs/protocol.md §3), real gateway + aioquic client."""

from __future__ import annotations

import asyncio
import struct

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.gateway_conn import HELLO_TIMEOUT_S
from backend.pki import generate
from geostream.codec import encode
from geostream.errors import ErrorCode, ProtocolError
from geostream.messages import Ack, Batch, Error, Hello, Welcome
from geostream.session import ServerSession
from tests import emuclock
from tests.integration.net.rig import GatewayRig, RawClient, until


def pos(q: int) -> dict:
    return {"q": q, "ts": 1_700_000_000_000 + q, "k": "pos", "lat": 52.0, "lon": 4.0}


async def refused(client: RawClient, code: ErrorCode) -> Error:
    err = await client.next_message(Error)
    assert (err.code, err.fatal) == (int(code), True), err
    reason = await client.closed()
    assert f"code {int(code)}" in reason, reason
    return err


async def welcomed(gw, vehicle: str = "veh-1", epoch: int = 7) -> RawClient:
    token = await gw.provision(vehicle)
    client = await RawClient(gw).connect()
    assert isinstance(await client.hello(vehicle, token, epoch), Welcome)
    return client


async def test_wrong_ca_client_refuses_the_server(gw, tmp_path):
    other = generate(str(tmp_path / "other-pki"), ["localhost"], ca_name="impostor CA")
    client = RawClient(gw, ca_file=other["ca"])
    with pytest.raises(ConnectionError):
        await client.connect()
    assert gw.gateway.stats.auth_failures == 0


async def test_forged_vehicle_auth_failed(gw):
    await gw.provision("veh-1")
    client = await RawClient(gw).connect()
    err = await client.hello("veh-1", "forged-token")
    assert (err.code, err.fatal) == (ErrorCode.AUTH_FAILED, True)
    assert "code 5" in await client.closed()
    unknown = await RawClient(gw).connect()
    err = await unknown.hello("no-such-vehicle", "x")
    assert err.code == ErrorCode.AUTH_FAILED


async def test_revoked_at_hello_and_kicked_when_open(gw):
    open_client = await welcomed(gw, "veh-r")
    token = await gw.provision("veh-s")
    await gw.store.revoke_vehicle("veh-s")
    late = await RawClient(gw).connect()
    err = await late.hello("veh-s", token)
    assert (err.code, err.fatal) == (ErrorCode.REVOKED, True)

    t0 = asyncio.get_running_loop().time()
    await gw.store.revoke_vehicle("veh-r")
    await refused(open_client, ErrorCode.REVOKED)
    assert asyncio.get_running_loop().time() - t0 < 5, "kicked within seconds"
    assert "veh-r" not in gw.gateway.connections


async def test_writing_as_another_vehicle_is_forbidden(gw):
    await gw.provision("victim")
    client = await welcomed(gw, "veh-1")
    client.send(Batch(epoch=7, readings=(pos(1),), vehicle="victim"))
    await refused(client, ErrorCode.FORBIDDEN)
    assert await gw.seqs("victim") == [] and await gw.seqs("veh-1") == []


async def test_writing_another_epoch_is_forbidden(gw):
    client = await welcomed(gw, "veh-1", epoch=7)
    client.send(Batch(epoch=8, readings=(pos(1),)))
    await refused(client, ErrorCode.FORBIDDEN)


async def test_oversized_frame_too_large(gw):
    client = await welcomed(gw)
    client.send_raw(struct.pack(">I", 2**31) + b"\xa0" * 100)
    await refused(client, ErrorCode.TOO_LARGE)


async def test_batch_over_max_batch_bytes_too_large(gw):
    client = await welcomed(gw)
    readings = tuple({**pos(q), "pad": "x" * 100} for q in range(1, 800))  # ~100 KiB > 64 KiB
    client.send(Batch(epoch=7, readings=readings))
    await refused(client, ErrorCode.TOO_LARGE)


async def test_batch_beyond_credit_too_large(tmp_path, pki):
    # a database needing 3 s per commit keeps the first batches pending
    gw = await GatewayRig(tmp_path, pki, slow=(3.0,)).start()
    try:
        client = await welcomed(gw)
        # 5 × 1000 readings in flight > the 4096 credit a welcome grants
        for k in range(5):
            first = 1 + 1000 * k
            client.send(Batch(epoch=7, readings=tuple(pos(q) for q in range(first, first + 1000))))
        await refused(client, ErrorCode.TOO_LARGE)
    finally:
        await gw.stop()


async def test_malformed_cbor(gw):
    client = await welcomed(gw)
    client.send_raw(struct.pack(">I", 3) + b"\xff\xff\xff")
    await refused(client, ErrorCode.MALFORMED)


async def test_not_a_map_and_missing_fields_malformed(gw):
    client = await welcomed(gw)
    payload = cbor2.dumps({"t": "batch", "epoch": 7})
    client.send_raw(struct.pack(">I", len(payload)) + payload)
    await refused(client, ErrorCode.MALFORMED)


async def test_unknown_type_is_not_fatal(gw):
    client = await welcomed(gw)
    payload = cbor2.dumps({"t": "gossip", "x": 1})
    client.send_raw(struct.pack(">I", len(payload)) + payload)
    err = await client.next_message(Error)
    assert (err.code, err.fatal) == (ErrorCode.UNKNOWN_TYPE, False)
    client.send(Batch(epoch=7, readings=(pos(1), pos(2))))
    ack = await client.next_message(Ack)
    assert ack.through == 2
    assert await gw.seqs("veh-1") == [1, 2]
    client.close()


def test_hostile_bytes_never_crash_or_leak(tmp_path, pki):
    """Random bytes on the session stream of real connections: refused, nothing left behind.
    On the emulated clock: each close waits out its closing period (3 emulated s), which in real
    time took 50 s for the twelve and left a thin margin under load."""
    emuclock.run(_hostile_bytes(tmp_path, pki))


async def _hostile_bytes(tmp_path, pki) -> None:
    import random

    gw = await GatewayRig(tmp_path, pki).start()
    try:
        await _hostile_bytes_on(gw, random.Random(7))
    finally:
        await gw.stop()


async def _hostile_bytes_on(gw, rnd) -> None:
    baseline = len(asyncio.all_tasks())
    for i in range(12):
        client = await RawClient(gw).connect()
        if i % 2:  # after a valid hello too
            token = await gw.provision(f"fz-{i}")
            assert isinstance(await client.hello(f"fz-{i}", token), Welcome)
        blob = rnd.randbytes(rnd.randint(1, 3000))
        client.send_raw(blob)
        try:
            await client.closed(timeout=12)  # fatal error, or hello timeout (10 s) for short junk
        finally:
            client.close()
    await until(lambda: not gw.gateway.connections, 5, "all fuzz sessions gone")
    await until(lambda: len(asyncio.all_tasks()) <= baseline + 1, 5, "no leaked tasks")
    ok = await welcomed(gw, "after-fuzz")
    ok.send(Batch(epoch=7, readings=(pos(1),)))
    assert (await ok.next_message(Ack)).through == 1
    ok.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=6), st.booleans())
def test_server_session_only_raises_protocol_error(chunks, with_hello):
    session = ServerSession()
    if with_hello:
        from geostream.messages import Hello

        session.receive_data(encode(Hello(vehicle="v", token="t", epoch=1)))
        session.accept(0)
    for chunk in chunks:
        try:
            session.receive_data(chunk)
        except ProtocolError as exc:
            session.fail(exc)
            assert isinstance(exc.code, ErrorCode)
            if exc.code.fatal:
                return


def test_a_hello_that_waits_for_a_slow_store_is_not_timed_out(tmp_path, pki):
    """The hello deadline is for a peer that sends none: one that came is answered however
    long its authentication takes (a busy store thread under load took longer than
    HELLO_TIMEOUT_S, and the gateway refused 'no hello' to vehicles that had sent one, each
    of which then reconnected from scratch)."""
    emuclock.run(_slow_store_hello(tmp_path, pki))


async def _slow_store_hello(tmp_path, pki) -> None:
    gw = await GatewayRig(tmp_path, pki).start()
    token = await gw.provision("slow")
    authenticate = gw.gateway.store.authenticate

    async def slow(vehicle: str, tok: str):
        await asyncio.sleep(HELLO_TIMEOUT_S + 5)  # emulated seconds
        return await authenticate(vehicle, tok)

    gw.gateway.store.authenticate = slow
    client = await RawClient(gw).connect()
    try:
        client.send(Hello(vehicle="slow", token=token, epoch=7))
        answer = await client.next_message((Welcome, Error), timeout=HELLO_TIMEOUT_S + 30)
        assert isinstance(answer, Welcome), answer
    finally:
        client.close()
        await gw.stop()
