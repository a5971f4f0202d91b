"""What the real gateway keeps per connected vehicle once its session runs (docs/benchmarks.md,
"Where a qh3 gateway connection's bytes go"): the seam's trims reach the gateway's own
connections on each library (TLS context gone, FIFO queues as lists; on qh3 the facade spent),
a connection with no task running holds no task set, its spent hello deadline is no timer
handle, its session keeps no token, and the edge's CIDs of it and the gateway's connections
of its vehicle are lists; on qh3 the facade shares its empty set of
locally opened streams."""

from __future__ import annotations

import asyncio
import sys

import pytest

from geostream.messages import Ack, Batch, Welcome
from geostream.quic.spent import ListQueue
from tests.integration.net.rig import GatewayRig, RawClient, until


@pytest.mark.parametrize("name", ["aioquic", "qh3"])
async def test_a_connected_vehicle_keeps_only_its_spent_state(name, tmp_path, pki):
    rig = await GatewayRig(tmp_path, pki, quic_library=name).start()
    try:
        token = await rig.provision("veh-1")
        client = await RawClient(rig).connect()
        assert isinstance(await client.hello("veh-1", token), Welcome)
        client.send(Batch(epoch=7, readings=[{"q": 1, "ts": 1_700_000_000_001, "k": "pos",
                                               "lat": 52.0, "lon": 4.0}]))
        assert isinstance(await client.next_message(Ack), Ack)
        (proto,) = rig.gateway.connections["veh-1"]
        await until(lambda: proto._tasks is None, 10, "the hello task to finish")
        quic = proto._quic
        assert isinstance(quic._events, ListQueue)
        assert type(quic.tls if name == "aioquic" else quic._tls).__name__ == "_SpentServerTls"
        assert not isinstance(proto._hello_timer, asyncio.TimerHandle)
        # the edge's CIDs of the connection and the vehicle's connections: smaller than the
        # empty set each used to be
        assert sorted(proto._cids) == sorted({c for c, p in rig.gateway._server._connections.items()
                                              if p is proto})
        assert sys.getsizeof(proto._cids) < sys.getsizeof(set())
        assert sys.getsizeof(rig.gateway.connections["veh-1"]) < sys.getsizeof(set())
        assert proto.session.hello.token == ""
        if name == "qh3":
            assert not {"_remote_addr", "_create_core", "_handshake_complete",
                        "_created_local_stream_ids", "_session_ticket_handler"} & set(vars(quic))
        client.close()
    finally:
        await rig.stop()
