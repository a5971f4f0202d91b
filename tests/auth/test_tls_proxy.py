"""HTTPS on the dashboard listener (Secure cookies), and the reverse-proxy rules: forwarded
headers count only from a configured trusted proxy."""

from __future__ import annotations

import ssl

import aiohttp

from backend.auth.middleware import AUTH, COOKIE, SECURE_COOKIE
from backend.config import BackendConfig
from backend.service import Backend
from tests.authhelp import TEST_PASSWORD, add_user_token

from .conftest import FakeClock


async def _backend(tmp_path, pki, **settings) -> Backend:
    config = BackendConfig(db=f"sqlite://{tmp_path / 'fleet.db'}", quic_host="127.0.0.1",
                           quic_port=0, http_host="127.0.0.1", http_port=0,
                           cert=pki["cert"], key=pki["key"],
                           ticket_file=str(tmp_path / "tickets.sqlite"), **settings)
    backend = Backend(config)
    await backend.start()
    backend.app[AUTH].clock = FakeClock()
    await add_user_token(backend.store, "viewer", "viewer")
    return backend


async def _login(http, headers=None):
    async with http.post("/api/login", json={"username": "viewer", "password": TEST_PASSWORD},
                         headers=headers or {}) as r:
        return r.status, r.headers.get("Set-Cookie", "")


async def test_https_listener_sets_secure_cookies(tmp_path, pki, capsys):
    backend = await _backend(tmp_path, pki, http_cert=pki["cert"], http_key=pki["key"])
    try:
        assert "dashboard https://localhost:" in capsys.readouterr().out
        ctx = ssl.create_default_context(cafile=pki["ca"])
        url = f"https://127.0.0.1:{backend.http_port}"
        async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.get("/healthz") as r:
                assert r.status == 200
            status, cookie = await _login(http)
            assert status == 200 and cookie.startswith(f"{SECURE_COOKIE}=")
            assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
            value = cookie.split(";")[0].partition("=")[2]
            async with http.get("/api/me", headers={"Cookie": f"{SECURE_COOKIE}={value}"}) as r:
                assert r.status == 200  # the browser sends it back: logged in
                assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        async with aiohttp.ClientSession() as http:  # plain HTTP on the TLS port: no answer
            try:
                async with http.get(f"http://127.0.0.1:{backend.http_port}/healthz") as r:
                    assert r.status == 400
            except aiohttp.ClientError:
                pass
    finally:
        await backend.stop()


async def test_forwarded_headers_only_from_a_trusted_proxy(tmp_path, pki):
    backend = await _backend(tmp_path, pki, trusted_proxies=("127.0.0.1",))
    state = backend.app[AUTH]
    url = f"http://127.0.0.1:{backend.http_port}"
    try:
        async with aiohttp.ClientSession(url) as http:
            _, cookie = await _login(http, {"X-Forwarded-Proto": "https"})
            # TLS ended at the proxy: the browser holds a __Host- cookie
            assert cookie.startswith(f"{SECURE_COOKIE}=") and "Secure" in cookie
            value = cookie.split(";")[0].partition("=")[2]
            async with http.get("/api/me", headers={"X-Forwarded-Proto": "https",
                                                    "Cookie": f"{SECURE_COOKIE}={value}"}) as r:
                assert r.status == 200
            # under TLS a cookie without the prefix (planted over plain HTTP or by a sibling
            # subdomain) counts for nothing
            async with http.get("/api/me", headers={"X-Forwarded-Proto": "https",
                                                    "Cookie": f"{COOKIE}={value}"}) as r:
                assert r.status == 401
            http.cookie_jar.clear()
            for i in range(20):  # one client behind the proxy fails 20 times
                async with http.post("/api/login", json={"username": f"u{i}", "password": "x"},
                                     headers={"X-Forwarded-For": "198.51.100.7"}) as r:
                    assert r.status == 401
            status, _ = await _login(http, {"X-Forwarded-For": "198.51.100.7"})
            assert status == 429
            status, _ = await _login(http, {"X-Forwarded-For": "198.51.100.8"})
            assert status == 200  # its neighbour behind the same proxy is not limited
        assert "198.51.100.7" in state.limiter.addresses.level
        # not trusted: the same headers are ignored
        state.trusted_proxies = ()
        async with aiohttp.ClientSession(url) as http:
            _, cookie = await _login(http, {"X-Forwarded-Proto": "https"})
            assert "Secure" not in cookie and cookie.startswith(f"{COOKIE}=")
            async with http.post("/api/login", json={"username": "u", "password": "x"},
                                 headers={"X-Forwarded-For": "203.0.113.1"}) as r:
                assert r.status == 401
        assert "203.0.113.1" not in state.limiter.addresses.level
        assert "127.0.0.1" in state.limiter.addresses.level
    finally:
        await backend.stop()


def test_settings_from_flags_and_toml(tmp_path, capsys):
    from backend.cli import _parser, build_config, main

    toml = tmp_path / "backend.toml"
    toml.write_text('trusted_proxies = ["10.0.0.0/8"]\nsession_idle_s = 600\n'
                    'http_cert = "/etc/fleet-backend/https.pem"\n')
    c = build_config(_parser().parse_args(["--config", str(toml)]))
    assert (c.trusted_proxies, c.session_idle_s, c.http_cert) == (
        ["10.0.0.0/8"], 600, "/etc/fleet-backend/https.pem")
    c = build_config(_parser().parse_args(["--config", str(toml), "--trusted-proxy", "::1",
                                           "--http-key", "k.pem", "--session-max-s", "3600"]))
    assert (c.trusted_proxies, c.http_key, c.session_max_s) == (["::1"], "k.pem", 3600)
    assert c.http_host == "127.0.0.1"  # nothing here opens the listener beyond loopback
    assert main(["--trusted-proxy", "10.0.0.300", "migrate"]) == 2
    assert "bad configuration" in capsys.readouterr().err
