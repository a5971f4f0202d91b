"""Security headers on every response of the running backend (pages, API, errors, static
files, the WebSocket upgrade), HSTS only under TLS, and the login page's code outside the page."""

from __future__ import annotations

import re

import aiohttp

from backend.auth.headers import content_security_policy, origin_of
from backend.web import STATIC
from tests.authhelp import bearer
from tests.integration.auth.test_tls_proxy import _backend

PATHS = ["/", "/login", "/healthz", "/api/me", "/api/vehicles", "/api/no-such-route",
         "/static/app/app.css", "/static/app/login.js", "/api/openapi.json"]


def _csp(headers) -> dict[str, str]:
    return {d.split()[0]: d for d in (p.strip() for p in headers[
        "Content-Security-Policy"].split(";")) if d}


async def test_every_response_carries_the_security_headers(tmp_path, pki):
    backend = await _backend(tmp_path, pki, trusted_proxies=("127.0.0.1",))
    try:
        url = f"http://127.0.0.1:{backend.http_port}"
        token = await _token(backend)
        async with aiohttp.ClientSession(url) as http:
            for auth in ({}, bearer(token)):
                for path in PATHS:
                    async with http.get(path, headers=auth, allow_redirects=False) as r:
                        h = r.headers
                        csp = _csp(h)
                        assert csp["script-src"] == "script-src 'self'", path
                        assert csp["style-src"] == "style-src 'self'", path
                        assert csp["frame-ancestors"] == "frame-ancestors 'none'", path
                        assert "blob:" in csp["worker-src"], path  # MapLibre's workers
                        assert h["X-Content-Type-Options"] == "nosniff", path
                        assert h["Referrer-Policy"] == "same-origin", path
                        assert "Strict-Transport-Security" not in h, path  # plain HTTP
                        if path.startswith("/static/"):
                            assert h.get("Cache-Control") != "no-store", path
                        else:
                            assert h["Cache-Control"] == "no-store", (path, r.status)
            # credentials in the answer: never stored by a browser or a proxy
            async with http.post("/api/login", json={"username": "viewer",
                                                     "password": "wrong password!"}) as r:
                assert r.status == 401 and r.headers["Cache-Control"] == "no-store"
            async with http.post("/api/users/viewer/tokens", json={"label": "x"},
                                 headers=bearer(token)) as r:
                assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
            async with http.ws_connect("/ws", headers=bearer(token)) as ws:
                assert ws._response.headers["X-Content-Type-Options"] == "nosniff"
            # behind a TLS proxy: HSTS
            async with http.get("/login", headers={"X-Forwarded-Proto": "https"}) as r:
                assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        await backend.stop()


async def _token(backend) -> str:
    from tests.authhelp import add_user_token

    return await add_user_token(backend.store, "admin", "admin")


def test_pages_hold_no_inline_script_or_style():
    """What the CSP forbids is not in the shipped pages (web/src → static/app)."""
    for page in ("index.html", "login.html"):
        html = (STATIC / "app" / page).read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, (page, tag)
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), page  # nothing inside
        assert "<style" not in html and " style=" not in html, page
        assert not re.search(r"\son[a-z]+=", html), page  # no inline event handlers


def test_csp_names_a_configured_map_style_origin():
    assert origin_of("https://tiles.example:8443/style.json?key=1") == \
        "https://tiles.example:8443"
    assert origin_of("/local/style.json") is None and origin_of("javascript:x") is None
    csp = content_security_policy(["https://tiles.example"])
    assert "connect-src 'self' https://tiles.example" in csp
    assert "img-src 'self' data: blob: https://tiles.example" in csp
