"""Security headers on every HTTP response (sans-IO rules + one aiohttp hook).

`security_headers()` decides from plain facts (the path, TLS or not, extra map origins); the
hook `install()` adds to `on_response_prepare`, which every response passes through — handlers,
errors raised as exceptions, static files, the WebSocket upgrade — so no route can forget them.

The Content-Security-Policy allows no inline script or style (the pages load their code and
CSS from /static/app/), and what MapLibre GL needs: its worker (a module file of ours, or a
blob: URL), images and sprites from blob:/data:, tiles from a configured style's origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

# One year: long enough that a first visit protects the next ones (browsers cap nothing lower).
HSTS_MAX_AGE_S = 365 * 24 * 3600
# Static assets are code and map data, identical for everyone: the only responses a browser
# (or a proxy) may keep. Everything else is data of a logged-in user, or credentials.
STATIC_PREFIX = "/static/"
# The customer's tracking pages (backend/api/links.py): their own, narrower policy, and no
# Referer ever, since the path holds the link's token.
TRACK_PREFIX = "/t/"
TRACK_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # its view and its live feed only
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


def origin_of(url: str) -> str | None:
    """`https://tiles.example:8443` of an absolute http(s) URL, else None."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def content_security_policy(extra_origins: Iterable[str] = ()) -> str:
    """The CSP of every response; `extra_origins` (a configured map style's origin) may be
    fetched from and drawn as images (tiles, sprites, glyphs)."""
    extra = "".join(f" {o}" for o in sorted(set(extra_origins)))
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",  # no 'unsafe-inline', no 'unsafe-eval'
        "style-src 'self'",  # no style="" attributes either: the app sets styles through CSSOM
        f"img-src 'self' data: blob:{extra}",
        "font-src 'self'",
        f"connect-src 'self'{extra}",  # 'self' covers ws:/wss: to this host (CSP level 3)
        "worker-src 'self' blob:",  # MapLibre's worker (ours, or a blob: URL) and the live worker
        "child-src 'self' blob:",  # the same, for browsers without worker-src
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def security_headers(path: str, secure: bool, csp: str) -> dict[str, str]:
    """The headers a response to `path` gets. `secure`: the browser reached us over TLS
    (ours, or a trusted proxy's)."""
    track = path.startswith(TRACK_PREFIX)
    headers = {
        "Content-Security-Policy": TRACK_CSP if track else csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
        "Referrer-Policy": "no-referrer" if track else "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if track:
        headers["X-Robots-Tag"] = "noindex, nofollow"
    if secure:
        headers["Strict-Transport-Security"] = f"max-age={HSTS_MAX_AGE_S}"
    if not path.startswith(STATIC_PREFIX):
        headers["Cache-Control"] = "no-store"
    return headers


def install(app: web.Application, is_secure, extra_origins: Iterable[str] = ()) -> None:
    """Add the headers to every response of `app`; `is_secure(request) -> bool`."""
    csp = content_security_policy(extra_origins)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(security_headers(request.path, is_secure(request), csp))

    app.on_response_prepare.append(add_headers)
