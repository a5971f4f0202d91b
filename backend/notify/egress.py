"""The egress guard: every request the backend makes to an address someone configured (webhooks,
Apprise URLs, anything that calls out) goes through here (docs/notifications.md, "Egress").

The rule (`EgressPolicy`, pure, in backend/notify/egress_policy.py, re-exported here): an
address is refused unless it is globally routable (no private, loopback, link-local, multicast,
shared, documentation or reserved range, IPv4 inside IPv6 checked as IPv4), or it lies in a
range an admin allowed (`[notify] allow_networks`).

Where it is applied: on the address actually connected to. A name is resolved once, each
address is checked, and the connection goes to a checked address — so a name that resolved to
a public address when the subscription was made and to 127.0.0.1 now (DNS rebinding) is
refused now. Redirects are never followed (a 3xx is an answer, not a new destination), and no
proxy from the environment is used (it would be the address connected to).

Two edges share the rule:
- `EgressClient` (aiohttp): its connector's resolver is `GuardedResolver`; an IP literal, which
  aiohttp connects to without resolving, is checked before the request.
- `guarded()` (synchronous libraries on a worker thread: Apprise's plugins use `requests`, its
  e-mail plugin `smtplib`): while it is active on the calling thread, `socket.getaddrinfo`
  returns only checked addresses (or fails as an unresolvable name would) and `requests`
  follows no redirect.
  Apprise has ~170 plugins calling `requests` directly and no per-call hook for the socket or
  the resolver, so the hook sits where every one of them resolves; it is process-wide but only
  acts inside `guarded()` (a context variable), so nothing else in the backend sees it.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .egress_policy import (
    HTTP_SCHEMES,
    MAX_RESPONSE_BYTES,
    MAX_URL_LENGTH,
    REQUEST_TIMEOUT_S,
    EgressPolicy,
    EgressRefused,
    IPAddress,
    IPNetwork,
    check_http_url,
    literal_ip,
    parse_networks,
)

__all__ = ["HTTP_SCHEMES", "MAX_RESPONSE_BYTES", "MAX_URL_LENGTH", "REQUEST_TIMEOUT_S",
           "EgressClient", "EgressPolicy", "EgressRefused", "GuardedResolver", "IPAddress",
           "IPNetwork", "check_http_url", "guarded", "literal_ip", "parse_networks"]

# --- the aiohttp edge ---------------------------------------------------------------------

Resolve = Callable[[str, int], Awaitable[list[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (getaddrinfo on the loop's executor)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver: `resolve` (the system's unless given) then the policy; aiohttp
    connects to exactly the addresses returned."""

    def __init__(self, policy: EgressPolicy, resolve: Resolve | None = None):
        self.policy = policy
        self._resolve = resolve or system_resolve

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from exc
        out: list[ResolveResult] = []
        for a in self.policy.filter(host, addresses):
            fam = socket.AF_INET6 if ":" in a else socket.AF_INET
            out.append({"hostname": host, "host": a, "port": port, "family": fam,
                        "proto": 0, "flags": socket.AI_NUMERICHOST})
        return out

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes  # at most MAX_RESPONSE_BYTES


class EgressClient:
    """HTTP requests out, through the guard: `await client.post(url, body, headers)`. One per
    process (its connection pool); `close()` at shutdown."""

    def __init__(self, policy: EgressPolicy, resolve: Resolve | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_S):
        self.policy = policy
        self._resolver = GuardedResolver(policy, resolve)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=self._resolver, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  trust_env=False, auto_decompress=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpAnswer:
        """POST `body`; the answer (any status, never a redirect followed). EgressRefused
        for a destination the policy refuses; aiohttp.ClientError / TimeoutError when the
        receiver cannot be reached."""
        check_http_url(url, self.policy)
        async with self._client().post(url, data=body, headers=headers,
                                       allow_redirects=False) as resp:
            data = await resp.content.read(MAX_RESPONSE_BYTES)
            return HttpAnswer(resp.status, data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --- the synchronous edge (Apprise on a worker thread) ---------------------------------------

_ACTIVE: contextvars.ContextVar[tuple[EgressPolicy, list[str]] | None] = contextvars.ContextVar(
    "egress_policy", default=None)
_real_getaddrinfo = socket.getaddrinfo
_installed = False


def _guarded_getaddrinfo(host, port, *args, **kwargs):
    active = _ACTIVE.get()
    infos = _real_getaddrinfo(host, port, *args, **kwargs)
    if active is None:
        return infos
    policy, refusals = active
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        allowed = set(policy.filter(name, [i[4][0] for i in infos]))
    except EgressRefused as exc:  # as a failed resolution: every library handles that
        refusals.append(str(exc))
        raise socket.gaierror(socket.EAI_FAIL, f"egress refused: {exc}") from None
    return [i for i in infos if i[4][0] in allowed]


def _install() -> None:
    """Put the hooks in place once (they act only inside `guarded()`)."""
    global _installed
    if _installed:
        return
    socket.getaddrinfo = _guarded_getaddrinfo
    try:
        import requests

        real_target = requests.Session.get_redirect_target

        def no_redirect_when_guarded(self, resp):
            return None if _ACTIVE.get() is not None else real_target(self, resp)

        requests.Session.get_redirect_target = no_redirect_when_guarded  # type: ignore
    except ImportError:  # no requests, no library of ours that follows redirects with it
        pass
    _installed = True


@contextmanager
def guarded(policy: EgressPolicy) -> Iterator[list[str]]:
    """On this thread, for the block: every resolution returns only addresses `policy`
    allows (none: `socket.gaierror` "egress refused: …", which libraries report as a failed
    connection), and `requests` follows no redirect. Yields the list the refusals' reasons
    are added to (libraries may log them only at debug level)."""
    _install()
    refusals: list[str] = []
    token = _ACTIVE.set((policy, refusals))
    try:
        yield refusals
    finally:
        _ACTIVE.reset(token)
