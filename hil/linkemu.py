"""Our UDP link emulator: delay, jitter, loss, blackouts and NAT rebinding, in user space.

The machines have no netem qdisc, so a relay sits between agent and gateway:

    agent ──udp──▶ [listen socket] LinkEmulator [upstream socket] ──udp──▶ gateway

`LinkModel` is the sans-IO core: given the time and a direction it decides whether a datagram
is lost and when it is delivered (time is an argument, randomness a seeded `random.Random`).
`LinkEmulator` is the thin asyncio relay that moves bytes at those times. `rebind()` replaces
the upstream socket, so the gateway sees the client's source port change exactly as after a
carrier NAT rebinding; datagrams to the old port are lost as the old mapping is gone.
`hold_after_first_flight()` lets each client's first flight through and holds what it sends
once an answer reached it, until `release()`: an answer that arrives meanwhile needed one round
trip, whatever the scheduling delays (tests count round trips this way, not by time).

    python -m hil.linkemu --listen 127.0.0.1:5000 --target 127.0.0.1:4433 --delay-ms 25 \\
        --jitter-ms 5 --loss 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import random
import sys
from collections import deque
from dataclasses import dataclass, field

UP = "up"  # agent → gateway
DOWN = "down"  # gateway → agent
# Datagrams held for `release()` at most: a handshake's second flight and a few batches are a
# handful; beyond this they are dropped (counted as lost), so a stuck test cannot grow memory.
MAX_HELD = 1000


@dataclass
class LinkStats:
    forwarded: int = 0
    lost: int = 0
    blacked_out: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    datagrams_up: int = 0
    datagrams_down: int = 0
    rebinds: int = 0


@dataclass
class LinkModel:
    """One-way delay (each direction), uniform jitter, random loss, blackout windows.

    Delivery order within a direction is kept (a datagram never overtakes the previous one), as
    on a single radio bearer; jitter then shows as delay variation, not reordering.
    """

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    seed: int = 1
    blackouts: list[tuple[float, float]] = field(default_factory=list)
    stats: LinkStats = field(default_factory=LinkStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._last = {UP: 0.0, DOWN: 0.0}

    def blackout(self, start: float, duration: float) -> None:
        """Nothing passes in either direction during [start, start + duration)."""
        self.blackouts.append((start, start + duration))

    def dark(self, now: float) -> bool:
        return any(a <= now < b for a, b in self.blackouts)

    def decide(self, now: float, direction: str, size: int) -> float | None:
        """When a datagram sent now is delivered, or None if it is lost."""
        if self.dark(now):
            self.stats.blacked_out += 1
            return None
        if self.loss and self._rng.random() < self.loss:
            self.stats.lost += 1
            return None
        delay = self.delay_s
        if self.jitter_s:
            delay = max(0.0, delay + self._rng.uniform(-self.jitter_s, self.jitter_s))
        at = max(now + delay, self._last[direction])
        self._last[direction] = at
        return at

    def delivered(self, now: float, direction: str, size: int) -> bool:
        """Final check at delivery time: a blackout also swallows datagrams in flight."""
        if self.dark(now):
            self.stats.blacked_out += 1
            return False
        self.stats.forwarded += 1
        if direction == UP:
            self.stats.bytes_up += size
            self.stats.datagrams_up += 1
        else:
            self.stats.bytes_down += size
            self.stats.datagrams_down += 1
        return True


class _Listen(asyncio.DatagramProtocol):
    def __init__(self, emu: LinkEmulator):
        self.emu = emu

    def datagram_received(self, data: bytes, addr) -> None:
        self.emu._from_client(data, addr)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, emu: LinkEmulator, client: tuple):
        self.emu = emu
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if self.emu._upstreams.get(self.client) is self:  # the old mapping is gone after rebind
            self.emu._schedule(DOWN, data, lambda d: self.emu._to_client(self.client, d))


class LinkEmulator:
    def __init__(self, target: tuple[str, int], model: LinkModel | None = None,
                 listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.target = target
        self.listen_addr = listen
        self.model = model or LinkModel()
        self._listen: asyncio.DatagramTransport | None = None
        self._upstreams: dict[tuple, _Upstream] = {}
        self._pending: dict[tuple, list[bytes]] = {}
        # datagrams in flight per direction, oldest first: the event loop's timer heap does not
        # keep the order of timers due at the same instant, so each timer delivers the oldest
        self._in_flight: dict[str, deque] = {UP: deque(), DOWN: deque()}
        self._loop: asyncio.AbstractEventLoop | None = None
        # hold_after_first_flight: the clients an answer reached; what they sent since, in order
        self._holding = False
        self._answered: set[tuple] = set()
        self._held: list[tuple[tuple, bytes]] = []

    @property
    def address(self) -> tuple[str, int]:
        return self._listen.get_extra_info("sockname")[:2]

    def now(self) -> float:
        return self._loop.time()

    async def start(self) -> LinkEmulator:
        self._loop = asyncio.get_running_loop()
        self._listen, _ = await self._loop.create_datagram_endpoint(
            lambda: _Listen(self), local_addr=self.listen_addr)
        return self

    def blackout(self, duration: float, start_in: float = 0.0) -> None:
        self.model.blackout(self.now() + start_in, duration)

    def hold_after_first_flight(self) -> None:
        """From now on, a client's datagrams pass until the link has delivered it one from the
        server; what it sends after that waits for `release()`."""
        self._holding = True
        self._answered.clear()

    def release(self) -> int:
        """Stop holding; the held datagrams go on in order (with the link's delay from now).
        Returns how many were held."""
        self._holding = False
        held, self._held = self._held, []
        for client, data in held:
            self._from_client(data, client)
        return len(held)

    @property
    def held(self) -> int:
        """Datagrams waiting for `release()`."""
        return len(self._held)

    async def rebind(self) -> None:
        """NAT rebinding: every client gets a new upstream source port."""
        for client in list(self._upstreams):
            await self._open_upstream(client)
        self.model.stats.rebinds += 1

    async def _open_upstream(self, client: tuple) -> None:
        host = self.target[0]
        local = ("::", 0) if ":" in host else ("0.0.0.0", 0)
        if host.startswith("127."):
            local = ("127.0.0.1", 0)
        transport, proto = await self._loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), local_addr=local, remote_addr=self.target)
        old = self._upstreams.get(client)
        self._upstreams[client] = proto
        if old is not None:
            old.transport.close()

    def _from_client(self, data: bytes, client: tuple) -> None:
        if self._holding and client in self._answered:
            if len(self._held) < MAX_HELD:
                self._held.append((client, data))
            else:
                self.model.stats.lost += 1
            return
        if client not in self._upstreams:
            if client in self._pending:
                self._pending[client].append(data)
                return
            self._pending[client] = [data]
            self._loop.create_task(self._first(client))
            return
        self._schedule(UP, data, lambda d: self._send_up(client, d))

    async def _first(self, client: tuple) -> None:
        await self._open_upstream(client)
        for data in self._pending.pop(client, []):
            self._schedule(UP, data, lambda d: self._send_up(client, d))

    def _to_client(self, client: tuple, data: bytes) -> None:
        if self._holding:
            self._answered.add(client)
        self._listen.sendto(data, client)

    def _send_up(self, client: tuple, data: bytes) -> None:
        up = self._upstreams.get(client)
        if up is not None and up.transport is not None and not up.transport.is_closing():
            up.transport.sendto(data)

    def _schedule(self, direction: str, data: bytes, send) -> None:
        at = self.model.decide(self.now(), direction, len(data))
        if at is None:
            return

        self._in_flight[direction].append((data, send))
        self._loop.call_at(at, self._deliver_oldest, direction)

    def _deliver_oldest(self, direction: str) -> None:
        data, send = self._in_flight[direction].popleft()
        if self.model.delivered(self.now(), direction, len(data)):
            send(data)

    def close(self) -> None:
        for up in self._upstreams.values():
            if up.transport:
                up.transport.close()
        if self._listen:
            self._listen.close()


def hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def relay_main(argv: list[str] | None, prog: str, description: str, default_listen: str,
               start, with_loss: bool = True) -> int:
    """The command line of our relays (UDP here, TCP in hil.tcplink): parse the link flags,
    `await start(args)` → (relay, model), print the model's counters every 10 s until Ctrl-C."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--listen", default=default_listen)
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay per direction")
    p.add_argument("--jitter-ms", type=float, default=0.0)
    if with_loss:
        p.add_argument("--loss", type=float, default=0.0, help="probability per datagram")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    async def serve() -> None:
        relay, model = await start(args)
        print(f"{prog.split('.')[-1]} {relay.address} → {args.target}", flush=True)
        try:
            while True:
                await asyncio.sleep(10)
                print(model.stats, flush=True)
        finally:
            closing = relay.close()
            if inspect.isawaitable(closing):
                await closing

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


async def _start(args) -> tuple[LinkEmulator, LinkModel]:
    model = LinkModel(args.delay_ms / 1000, args.jitter_ms / 1000, args.loss, args.seed)
    return await LinkEmulator(hostport(args.target), model, hostport(args.listen)).start(), model


def main(argv: list[str] | None = None) -> int:
    return relay_main(argv, "python -m hil.linkemu", __doc__.split("\n")[0], "127.0.0.1:5000",
                      _start)


if __name__ == "__main__":
    sys.exit(main())
