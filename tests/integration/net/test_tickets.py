"""The gateway's session tickets outlive a backend restart (docs/protocol.md §8): the ticket file
itself, then real backend processes restarted under real aioquic clients."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import stat
import time

import pytest

from agent.uplink_machine import BACKOFF_MAX_S
from backend.cli import _parser, build_config
from backend.config import BackendConfig
from backend.tickets import TicketStore
from geostream import ALPN
from geostream.quic import library
from geostream.tickets import ticket_from_json, ticket_to_json
from hil.linkemu import LinkEmulator, LinkModel
from tests.integration.net.rig import AgentRig, QuicLink, client_config, until
from tests.integration.net.test_quic_tls_trim import CLIENT, SERVER, events, pump, trimmed_pair

_lib = library("aioquic")  # the tickets made here; the round trip test crosses to qh3
CipherSuite, SessionTicket = _lib.CipherSuite, _lib.SessionTicket

# The relay's round trip. The round trips a welcome needed are counted by holding what the
# agent sends after its first flight (LinkEmulator.hold_after_first_flight), not by the clock:
# a stalled process on a loaded machine (0.6 s of SIGSTOP on the backend made a resumed welcome
# take 1.55 s) delays a welcome but adds no round trip. The times are printed only, and a full
# handshake can never be faster than two of these.
RTT_S = 0.8


def ticket(label: bytes, valid_s: float = 86400) -> SessionTicket:
    now = datetime.datetime.now(datetime.UTC)
    return SessionTicket(
        age_add=7, cipher_suite=CipherSuite.AES_128_GCM_SHA256,
        not_valid_after=now + datetime.timedelta(seconds=valid_s), not_valid_before=now,
        resumption_secret=os.urandom(32), server_name=None, ticket=label,
        max_early_data_size=0xFFFFFFFF, other_extensions=[(0x39, os.urandom(40))])


# --- the ticket file ---------------------------------------------------------------------------

def test_serializer_round_trips_every_field():
    t = ticket(b"label-1")
    assert ticket_from_json(ticket_to_json(t), _lib) == t  # whatever $FLEET_QUIC_LIBRARY says
    assert ticket_to_json(t)["not_valid_after"].endswith("+00:00")


def test_a_ticket_reads_back_under_either_library():
    """aioquic keeps ticket times aware, qh3 naive in UTC: the file is the same either way, and
    each library gets its own kind back (qh3 compares with a naive clock in the handshake)."""
    aio, qh3 = library("aioquic"), library("qh3")
    t = ticket(b"x" * 16)
    as_qh3 = ticket_from_json(ticket_to_json(t), qh3)
    assert isinstance(as_qh3, qh3.SessionTicket) and as_qh3.not_valid_after.tzinfo is None
    assert as_qh3.not_valid_after == t.not_valid_after.replace(tzinfo=None)
    assert ticket_to_json(as_qh3) == ticket_to_json(t)
    back = ticket_from_json(ticket_to_json(as_qh3), aio)
    assert back.not_valid_after == t.not_valid_after and back.not_valid_after.tzinfo is not None


def test_ticket_survives_reopen_and_is_good_once(tmp_path):
    path = str(tmp_path / "state" / "tickets.sqlite")
    store = TicketStore(path)
    t = ticket(b"a" * 64)
    store.add(t)
    store.close()  # the gateway restarts
    store = TicketStore(path)
    # compared as stored: the store returns the process's library's ticket ($FLEET_QUIC_LIBRARY)
    assert ticket_to_json(store.pop(b"a" * 64)) == ticket_to_json(t)
    assert store.pop(b"a" * 64) is None  # single use
    store.close()
    store = TicketStore(path)
    assert store.pop(b"a" * 64) is None  # ... also after another restart
    assert store.pop(b"never issued") is None
    store.close()


def test_ticket_file_is_private(tmp_path):
    path = tmp_path / "new-dir" / "tickets.sqlite"
    store = TicketStore(str(path))
    store.add(ticket(b"x"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.close()
    path.chmod(0o644)  # loosened by hand: tightened again at the next start
    TicketStore(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_expired_tickets_are_refused_and_pruned(tmp_path):
    store = TicketStore(str(tmp_path / "t.sqlite"))
    store.add(ticket(b"short-1", valid_s=0.3))
    store.add(ticket(b"short-2", valid_s=0.3))
    assert len(store) == 2
    time.sleep(0.4)
    assert store.pop(b"short-1") is None  # expired: a full handshake
    store.add(ticket(b"fresh"))
    assert len(store) == 1  # short-2 pruned by the add
    assert store.pop(b"fresh") is not None


def test_count_is_bounded_oldest_dropped(tmp_path):
    store = TicketStore(str(tmp_path / "t.sqlite"), limit=3)
    for i in range(5):
        store.add(ticket(b"t%d" % i))
    assert len(store) == 3
    assert [store.pop(b"t%d" % i) is not None for i in range(5)] == [False, False, True, True,
                                                                      True]


def test_a_file_sqlite_wrote_is_converted_and_keeps_its_tickets(tmp_path):
    """A gateway upgraded from the SQLite ticket file (schema 1: JSON rows, before session 18)
    keeps the tickets its vehicles hold: they still resume once, and the bounds still apply."""
    import json
    import sqlite3

    path = str(tmp_path / "t.sqlite")
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript("""CREATE TABLE session_tickets (id INTEGER PRIMARY KEY,
        label BLOB NOT NULL UNIQUE, not_valid_after_ms INTEGER NOT NULL, ticket TEXT NOT NULL);
        CREATE INDEX session_tickets_expiry ON session_tickets (not_valid_after_ms);
        PRAGMA user_version=1;""")
    kept = [ticket(b"v1-%d" % i) for i in range(3)]
    for t in kept:
        old.execute("INSERT INTO session_tickets (label, not_valid_after_ms, ticket) "
                    "VALUES (?, ?, ?)", (t.ticket, int(t.not_valid_after.timestamp() * 1000),
                                         json.dumps(ticket_to_json(t))))
    old.execute("INSERT INTO session_tickets (label, not_valid_after_ms, ticket) "
                "VALUES (?, 1, ?)", (b"torn", "{}"))
    old.close()
    store = TicketStore(path, limit=3, lib=_lib)
    assert len(store) == 3  # the unreadable row dropped
    store.close()
    store = TicketStore(path, limit=3, lib=_lib)  # a log now, not SQLite's file
    assert not os.path.exists(path + "-wal") and len(store) == 3
    assert ticket_to_json(store.pop(b"v1-1")) == ticket_to_json(kept[1])
    assert store.pop(b"v1-1") is None
    for i in range(2):
        store.add(ticket(b"new-%d" % i))
    assert len(store) == 3 and store.pop(b"v1-0") is None  # the oldest went past the limit
    store.close()


def test_a_torn_last_record_is_cut_off_and_the_log_goes_on(tmp_path):
    """A power cut in the middle of an append leaves part of a record: the tickets before it
    stay, the part is cut off, and what is appended after it reads back."""
    path = tmp_path / "t.sqlite"
    store = TicketStore(str(path), lib=_lib)
    store.add(ticket(b"whole"))
    store.add(ticket(b"torn"))
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    store = TicketStore(str(path), lib=_lib)
    assert len(store) == 1
    store.add(ticket(b"after"))
    store.close()
    store = TicketStore(str(path), lib=_lib)
    assert store.pop(b"torn") is None
    assert store.pop(b"whole") is not None and store.pop(b"after") is not None
    store.close()


def test_the_log_is_rewritten_with_its_live_tickets(tmp_path, monkeypatch):
    """Used and dropped tickets' records go when they outnumber the live ones; the live
    tickets, their order (the oldest go first past the limit) and their uses survive it."""
    import backend.tickets

    monkeypatch.setattr(backend.tickets, "COMPACT_SLACK", 10)
    path = tmp_path / "t.sqlite"
    store = TicketStore(str(path), limit=5, lib=_lib)
    for i in range(40):
        store.add(ticket(b"t%d" % i))
        if i % 2:
            assert store.pop(b"t%d" % i) is not None
    assert store._records <= 2 * len(store) + 10
    assert len(store) == 4  # t39 pushed t30 out, then was used
    store.close()
    store = TicketStore(str(path), limit=5, lib=_lib)
    assert len(store) == 4
    assert [store.pop(b"t%d" % i) is not None for i in range(30, 40)] == [
        False, False] + [True, False] * 4
    store.add(ticket(b"new"))
    store.close()
    assert len(TicketStore(str(path), limit=5, lib=_lib)) == 1


def test_unreadable_file_is_replaced(tmp_path):
    path = tmp_path / "t.sqlite"
    path.write_bytes(b"not a database" * 100)
    store = TicketStore(str(path))
    store.add(ticket(b"y"))
    assert store.pop(b"y") is not None


def test_ticket_file_setting():
    assert BackendConfig(db="sqlite:///srv/fleet/fleet.db").ticket_path() == \
        "/srv/fleet/gateway-tickets.sqlite"
    assert BackendConfig(db="postgresql://db/fleet").ticket_path() == \
        "/var/lib/fleet-backend/gateway-tickets.sqlite"
    assert BackendConfig().ticket_path() == "/var/lib/fleet-backend/gateway-tickets.sqlite"
    args = _parser().parse_args(["--db", "postgresql://db/fleet", "--ticket-file", "/x/t.db"])
    assert build_config(args).ticket_path() == "/x/t.db"


# --- real backend processes ------------------------------------------------------------------

async def start_backend(procs):
    return await asyncio.to_thread(procs.backend)


async def restart(procs, backend, how: str):
    if how == "kill9":
        backend.kill9()
    else:
        assert await asyncio.to_thread(backend.stop, signal.SIGTERM) == 0
    return await start_backend(procs)


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
async def test_backend_restart_then_agent_resumes_with_0rtt_in_one_round_trip(procs, tmp_path,
                                                                               how):
    """The ticket the backend issued before its restart still resumes: the hello goes as 0-RTT
    and the welcome answers the agent's first flight (one round trip) over a relay."""
    await asyncio.to_thread(procs.provision, "resume-bk")
    token = procs.tokens["resume-bk"]
    backend = await start_backend(procs)
    emu = await LinkEmulator(("127.0.0.1", procs.quic_port),
                             LinkModel(delay_s=RTT_S / 2)).start()
    try:
        costs = []
        for run in range(2):  # the same agent state directory both times
            if run == 1:  # resumed: the agent's first flight must bring the welcome
                emu.hold_after_first_flight()
            agent = AgentRig(tmp_path / "state", "resume-bk", token, *emu.address,
                             procs.pki["ca"]).start()
            try:
                await agent.add(5)
                if run == 1:
                    await until(lambda a=agent: "welcome_after_s" in a.uplink.stats.extra, 30,
                                "a welcome answering the first flight alone (one round trip)")
                    assert emu.release() > 0  # the agent's second flight was held meanwhile
                await until(lambda a=agent: a.uplink.stats.readings_acked >= 5, 15, "acked")
                extra = agent.uplink.stats.extra
                costs.append(extra["welcome_after_s"])
                assert extra["session_resumed"] == (run == 1), (how, run)
                assert extra["early_data_accepted"] == (run == 1), (how, run)
                assert agent.uplink.ticket_path.exists()
            finally:
                await agent.stop()
            if run == 0:  # the ticket has been issued: now the backend goes away
                backend = await restart(procs, backend, how)
        full, resumed = costs
        print(f"{how}: first connection {full * 1000:.0f} ms, after the backend restart "
              f"{resumed * 1000:.0f} ms (RTT {RTT_S * 1000:.0f} ms)")
        assert full >= 2 * RTT_S, costs  # the relay's delay applies: two round trips in full
        assert [r[1] for r in procs.stored("resume-bk")] == list(range(1, 11))
    finally:
        emu.close()


async def test_connected_agent_resumes_after_graceful_backend_restart(procs, tmp_path):
    """The backend restarts under a connected agent (SIGTERM closes the connection): the agent
    reconnects at once with the ticket the old process issued, and resumes."""
    await asyncio.to_thread(procs.provision, "resume-live")
    backend = await start_backend(procs)
    agent = AgentRig(tmp_path / "state", "resume-live", procs.tokens["resume-live"],
                     "127.0.0.1", procs.quic_port, procs.pki["ca"]).start()
    try:
        await agent.add(5)
        await until(lambda: agent.uplink.stats.readings_acked >= 5, 15, "acked")
        assert agent.uplink.stats.extra["session_resumed"] is False
        await until(lambda: agent.uplink.ticket_path.exists(), 5, "ticket stored")
        backend = await restart(procs, backend, "sigterm")
        # the backend is up again (restart() waited for it); the agent, which kept trying while
        # it started (slowly on a loaded machine), tries again within one backoff period
        await until(lambda: agent.uplink.stats.connects == 2, BACKOFF_MAX_S + 30, "reconnected")
        await agent.add(5)
        await until(lambda: agent.uplink.stats.readings_acked >= 10, 15, "acked after restart")
        assert agent.uplink.stats.extra["session_resumed"] is True
        assert [r[1] for r in procs.stored("resume-live")] == list(range(1, 11))
    finally:
        await agent.stop()


async def connect(procs, session_ticket: SessionTicket | None, issued: list) -> QuicLink:
    """A real aioquic client; returns once the handshake completed (stream data as 0-RTT)."""
    cfg = client_config(procs.pki["ca"])
    cfg.session_ticket = session_ticket
    link = QuicLink(cfg, ("127.0.0.1", procs.quic_port), lambda *a: None,
                    session_ticket_handler=issued.append)
    before = len(issued)
    await link.start("127.0.0.1")
    link.send(link.conn.get_next_available_stream_id(), b"\0")  # early data when resuming
    await asyncio.wait_for(asyncio.shield(link.connected), 10)
    await until(lambda: len(issued) > before, 5, "a new session ticket")
    return link


def close(link: QuicLink) -> None:
    link.close()
    link.abort()


async def test_ticket_is_good_once_across_restarts(quic_library, procs):
    """Used after a kill -9 restart; the same ticket again (a replayed 0-RTT ClientHello) gets a
    full handshake, on the same backend and after one more restart."""
    backend = await start_backend(procs)
    issued: list[SessionTicket] = []
    close(await connect(procs, None, issued))
    captured = issued[0]
    backend = await restart(procs, backend, "kill9")
    first = await connect(procs, captured, issued)
    assert (first.session_resumed, first.early_data_accepted) == (True, True)
    close(first)
    replay = await connect(procs, captured, issued)
    assert (replay.session_resumed, replay.early_data_accepted) == (False, False)
    close(replay)
    backend = await restart(procs, backend, "sigterm")
    replay = await connect(procs, captured, issued)
    assert (replay.session_resumed, replay.early_data_accepted) == (False, False)
    close(replay)
    # a fresh ticket from before this restart still works: only the used one is gone
    fresh = await connect(procs, issued[-2], issued)
    assert fresh.session_resumed
    close(fresh)


@pytest.mark.parametrize("name", ["aioquic", "qh3"])
def test_rejected_early_data_goes_with_the_clients_finished(name, pki):
    """Sans-IO, in memory: a client resumes with a ticket the server does not hold and sends
    stream data as 0-RTT; the server completes a full handshake without it. Once the client's
    handshake completed (and the seam's `resend_rejected_early_data`, which the agent's link
    and the load tester's call there), its next flight (the Finished) brings that data to the
    server in 1-RTT. aioquic without the hook kept it back until its loss detection; qh3's core
    queues it again itself."""
    lib = library(name)
    tickets: list = []
    trimmed_pair(lib, pki, tickets)  # a ticket from a server that is gone
    cfg = lib.QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    cfg.load_verify_locations(cafile=pki["ca"])
    cfg.session_ticket = tickets[0]
    client = lib.QuicConnection(configuration=cfg)
    now = 200.0
    client.connect(SERVER, now=now)
    client.send_stream_data(client.get_next_available_stream_id(), b"hello as 0-RTT")
    first = client.datagrams_to_send(now=now)
    server_cfg = lib.QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server_cfg.load_cert_chain(pki["cert"], pki["key"])  # holds no ticket
    server = lib.QuicConnection(
        configuration=server_cfg,
        original_destination_connection_id=lib.destination_cid(first[0][0], 8))
    for data, _ in first:
        server.receive_datagram(data, CLIENT, now=now)
    assert not [e for e in events(server) if isinstance(e, lib.StreamDataReceived)]
    now += 0.05
    pump(server, client, SERVER, now)  # the server's whole handshake flight
    done = [e for e in events(client) if isinstance(e, lib.HandshakeCompleted)]
    assert [(e.session_resumed, e.early_data_accepted) for e in done] == [(False, False)]
    lib.resend_rejected_early_data(client, now)
    pump(client, server, CLIENT, now)  # the client's Finished, at the same instant
    got = [e.data for e in events(server) if isinstance(e, lib.StreamDataReceived)]
    assert b"".join(got) == b"hello as 0-RTT"
