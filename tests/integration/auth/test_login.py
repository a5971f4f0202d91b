"""Login, sessions, CSRF, tokens, rate limiting and secrets on the running backend (both stores)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3

import aiohttp
import psycopg
import pytest

from backend.auth.middleware import COOKIE, CSRF_HEADER
from tests.authhelp import TEST_PASSWORD, bearer


def db_rows(db_url: str, sql: str) -> list[tuple]:
    """Read the store with an independent client (sqlite3 / psycopg), not the store code."""
    if db_url.startswith("sqlite://"):
        with sqlite3.connect(db_url.removeprefix("sqlite://")) as db:
            return db.execute(sql).fetchall()
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchall()


async def login(http, name: str, password: str = TEST_PASSWORD):
    async with http.post("/api/login", json={"username": name, "password": password}) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None), r


def cookie_jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP-address host (127.0.0.1)


async def test_login_me_logout_and_cookie_attributes(running):
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/login"
        async with http.get("/login") as r:
            assert r.status == 200 and "password" in await r.text()
        status, body, r = await login(http, "dispatcher")
        assert status == 200
        assert body["user"] == {"name": "dispatcher", "role": "dispatcher", "groups": []}
        set_cookie = r.headers["Set-Cookie"]
        assert f"{COOKIE}=" in set_cookie and "HttpOnly" in set_cookie
        assert "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
        assert "Secure" not in set_cookie  # plain HTTP here; over TLS see test_tls.py
        assert body["expires_ms"] == int(running.clock.t * 1000) + 8 * 3600 * 1000
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 200
        async with http.get("/api/me") as r:
            me = await r.json()
        assert me["csrf_token"] == body["csrf_token"] and me["user"]["name"] == "dispatcher"
        async with http.get("/api/vehicles") as r:
            assert r.status == 200
        async with http.post("/api/logout", headers={CSRF_HEADER: body["csrf_token"]}) as r:
            assert r.status == 204
        async with http.get("/api/vehicles") as r:
            assert r.status == 401
    assert db_rows(running.db_url, "SELECT count(*) FROM sessions") == [(0,)]


async def test_wrong_password_unknown_user_and_disabled_user_get_the_same_answer(running):
    async with aiohttp.ClientSession(running.url) as http:
        answers = [await login(http, "viewer", "wrong"), await login(http, "ghost")]
        await running.store.update_user("viewer", disabled=True)
        answers.append(await login(http, "viewer"))
        assert [(s, b) for s, b, _ in answers] == [(401, {"error": "invalid credentials"})] * 3
        async with http.post("/api/login", data="username=viewer&password=x",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 415  # a cross-site form cannot log anyone in


async def test_disabled_user_loses_session_and_tokens_then_gets_them_back(running):
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        assert (await login(http, "viewer"))[0] == 200
        token = bearer(running.tokens["viewer"])
        await running.store.update_user("viewer", disabled=True)
        async with http.get("/api/vehicles") as r:
            assert r.status == 401
        async with http.get("/api/vehicles", headers=token) as r:
            assert r.status == 401
        await running.store.update_user("viewer", disabled=False)
        async with http.get("/api/vehicles") as r:
            assert r.status == 401  # disabling ended the session for good
        async with http.get("/api/vehicles", headers=token) as r:
            assert r.status == 200  # the token is the user's again


async def test_session_expires_idle_and_absolute_with_a_fake_clock(running):
    clock = running.clock
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        assert (await login(http, "viewer"))[0] == 200
        # used every 3 h: the 8 h idle limit never bites, the 12 h absolute one (the
        # default session_max_s) does
        for _ in range(3):
            clock.t += 3 * 3600
            async with http.get("/api/me") as r:
                assert r.status == 200, clock.t
        clock.t += 3 * 3600  # 12 h after login
        async with http.get("/api/me") as r:
            assert r.status == 401
        assert (await login(http, "viewer"))[0] == 200
        clock.t += 8 * 3600 + 1  # unused for longer than the idle limit
        async with http.get("/api/me") as r:
            assert r.status == 401


async def test_sessions_survive_a_backend_restart(running, pki, tmp_path):
    from backend.auth.middleware import AUTH
    from backend.service import Backend

    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        assert (await login(http, "viewer"))[0] == 200
        cookie = next(c for c in http.cookie_jar if c.key == COOKIE).value
    config = running.backend.config
    await running.backend.stop()
    again = Backend(config)
    await again.start()
    again.app[AUTH].clock = running.clock
    running.backend = again  # the fixture stops this one
    url = f"http://127.0.0.1:{again.http_port}"
    async with aiohttp.ClientSession(url, cookies={COOKIE: cookie}) as http:
        async with http.get("/api/me") as r:
            assert r.status == 200 and (await r.json())["user"]["name"] == "viewer"


async def test_csrf_on_cookie_writes_not_on_bearer(running):
    body = {"name": "ops", "vehicles": ["truck-1"], "members": []}
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        _, login_body, _ = await login(http, "admin")
        async with http.post("/api/groups", json=body) as r:
            assert r.status == 403 and CSRF_HEADER in (await r.json())["error"]
        async with http.post("/api/groups", json=body, headers={CSRF_HEADER: "0" * 64}) as r:
            assert r.status == 403
        async with http.post("/api/groups", json=body,
                             headers={CSRF_HEADER: login_body["csrf_token"]}) as r:
            assert r.status == 201
    async with aiohttp.ClientSession(running.url) as http:
        async with http.put("/api/groups/ops", json={"vehicles": ["truck-2"]},
                            headers=bearer(running.tokens["admin"])) as r:
            assert r.status == 200 and (await r.json())["vehicles"] == ["truck-2"]


async def test_rate_limit_per_account_and_per_address(running):
    clock = running.clock
    async with aiohttp.ClientSession(running.url) as http:
        for _ in range(5):
            assert (await login(http, "admin", "guess"))[0] == 401
        status, _, r = await login(http, "admin")  # even the right password waits now
        assert status == 429 and int(r.headers["Retry-After"]) == 60
        assert (await login(http, "viewer"))[0] == 200  # another account is not locked
        clock.t += 60
        assert (await login(http, "admin"))[0] == 200
        # one address spraying many accounts: 20 failures, then it waits
        for i in range(20):
            assert (await login(http, f"user{i}", "guess"))[0] == 401
        status, _, r = await login(http, "dispatcher")
        assert status == 429 and int(r.headers["Retry-After"]) > 0
    assert running.auth.failed_logins == 25


async def test_token_revocation_and_admin_user_management(running):
    admin = bearer(running.tokens["admin"])
    async with aiohttp.ClientSession(running.url) as http:
        async with http.post("/api/users", json={"name": "carol", "role": "viewer"},
                             headers=admin) as r:
            assert r.status == 201
            password = (await r.json())["password"]
        async with http.post("/api/users", json={"name": "carol", "role": "viewer"},
                             headers=admin) as r:
            assert r.status == 409
        assert (await login(http, "carol", password))[0] == 200
        async with http.post("/api/users/carol/tokens", json={"label": "script"},
                             headers=admin) as r:
            assert r.status == 201
            created = await r.json()
        async with http.get("/api/vehicles", headers=bearer(created["token"])) as r:
            assert r.status == 200
        async with http.delete(f"/api/users/carol/tokens/{created['id']}", headers=admin) as r:
            assert r.status == 204
        async with http.get("/api/vehicles", headers=bearer(created["token"])) as r:
            assert r.status == 401
        async with http.patch("/api/users/carol", json={"role": "dispatcher",
                                                        "password": "new-secret-1"},
                              headers=admin) as r:
            assert r.status == 200
            record = await r.json()
        assert (record["name"], record["role"], record["disabled"]) == ("carol", "dispatcher",
                                                                        False)
        assert (await login(http, "carol", password))[0] == 401
        status, body, _ = await login(http, "carol", "new-secret-1")
        assert status == 200 and body["user"]["role"] == "dispatcher"
        async with http.get("/api/users", headers=admin) as r:
            users = {u["name"]: u for u in (await r.json())["users"]}
        assert users["carol"]["role"] == "dispatcher" and users["carol"]["tokens"] == []
        assert "password_hash" not in users["carol"]
        async with http.get("/api/audit", headers=admin) as r:
            actions = [(e["user"], e["action"], e["target"]) for e in (await r.json())["entries"]]
    assert actions[:4] == [("admin", "user.update", "carol"), ("admin", "token.delete", "carol"),
                           ("admin", "token.create", "carol"), ("admin", "user.create", "carol")]


async def test_secrets_never_logged_and_only_hashes_stored(running, caplog):
    caplog.set_level(logging.DEBUG)
    admin = bearer(running.tokens["admin"])
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        async with http.post("/api/users", json={"name": "dave", "role": "viewer"},
                             headers=admin) as r:
            password = (await r.json())["password"]
        async with http.post("/api/users/dave/tokens", json={}, headers=admin) as r:
            assert r.status == 400  # a token says what it is for
        async with http.post("/api/users/dave/tokens", json={"label": "x"}, headers=admin) as r:
            token = (await r.json())["token"]
        await login(http, "dave", "a-wrong-password-xyz")
        assert (await login(http, "dave", password))[0] == 200
        cookie = next(c for c in http.cookie_jar if c.key == COOKIE).value
    secrets = [password, token, cookie, "a-wrong-password-xyz", TEST_PASSWORD,
               *running.tokens.values()]
    assert "login failed for 'dave'" in caplog.text  # the log does say what happened
    for s in secrets:
        assert s not in caplog.text
    [(stored_hash,)] = db_rows(running.db_url, "SELECT password_hash FROM users "
                                               "WHERE name = 'dave'")
    assert stored_hash.startswith("$argon2id$v=19$") and password not in stored_hash
    hashes = {h for (h,) in db_rows(running.db_url, "SELECT token_hash FROM api_tokens")}
    assert hashlib.sha256(token.encode()).hexdigest() in hashes and token not in hashes
    sessions = {h for (h,) in db_rows(running.db_url, "SELECT id_hash FROM sessions")}
    assert sessions == {hashlib.sha256(cookie.encode()).hexdigest()}
    dump = repr(db_rows(running.db_url, "SELECT * FROM users")) + repr(
        db_rows(running.db_url, "SELECT * FROM audit"))
    for s in secrets:
        assert s not in dump


@pytest.mark.parametrize("origin, ok", [(None, True), ("self", True),
                                        ("http://evil.example", False)])
async def test_websocket_needs_auth_before_the_upgrade_and_checks_origin(running, origin, ok):
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect("/ws")
        assert refused.value.status == 401
        assert (await login(http, "viewer"))[0] == 200
        headers = {} if origin is None else {
            "Origin": running.url if origin == "self" else origin}
        if ok:
            async with http.ws_connect("/ws", headers=headers) as ws:
                await ws.send_json({"op": "subscribe", "topic": "live_updates:all"})
                assert (await ws.receive_json(timeout=5))["event"] == "subscribed"
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect("/ws", headers=headers)
            assert refused.value.status == 403
    async with aiohttp.ClientSession(running.url) as http:  # a token needs no Origin check
        async with http.ws_connect("/ws", headers={**bearer(running.tokens["viewer"]),
                                                   "Origin": "http://evil.example"}):
            pass


async def test_open_websocket_ends_when_the_session_does(running, monkeypatch):
    import backend.auth.middleware

    monkeypatch.setattr(backend.auth.middleware, "WS_RECHECK_S", 0.2)
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        assert (await login(http, "viewer"))[0] == 200
        async with http.ws_connect("/ws") as ws:
            await ws.send_json({"op": "subscribe", "topic": "live_updates:all"})
            assert (await ws.receive_json(timeout=5))["event"] == "subscribed"
            await asyncio.sleep(0.5)
            assert not ws.closed  # still a valid session: the feed stays
            await running.store.update_user("viewer", disabled=True)
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_logins_beyond_the_concurrent_checks_are_turned_away(running):
    from backend.auth.routes import MAX_CONCURRENT_LOGINS

    async with aiohttp.ClientSession(running.url) as http:
        running.auth.verifying = MAX_CONCURRENT_LOGINS  # as if that many were being checked
        status, _, r = await login(http, "viewer")
        assert status == 503 and r.headers["Retry-After"] == "1"
        running.auth.verifying = MAX_CONCURRENT_LOGINS - 1
        assert (await login(http, "viewer"))[0] == 200
        assert running.auth.verifying == MAX_CONCURRENT_LOGINS - 1  # released after the check
    assert running.auth.failed_logins == 0  # turned away is not a failed guess


async def test_the_last_admin_cannot_be_demoted_or_disabled(running):
    admin = bearer(running.tokens["admin"])
    async with aiohttp.ClientSession(running.url, headers=admin) as http:
        for change in ({"role": "viewer"}, {"disabled": True}):
            async with http.patch("/api/users/admin", json=change) as r:
                assert r.status == 409, change
        async with http.post("/api/users", json={"name": "second", "role": "admin"}) as r:
            assert r.status == 201
        async with http.patch("/api/users/second", json={"disabled": True}) as r:
            assert r.status == 200  # another admin is left
        async with http.patch("/api/users/admin", json={"role": "dispatcher"}) as r:
            assert r.status == 409  # the other one is disabled
        async with http.patch("/api/users/second", json={"disabled": False}) as r:
            assert r.status == 200
        async with http.patch("/api/users/admin", json={"role": "dispatcher"}) as r:
            assert r.status == 200
