"""Passwords: the policy (length, the shipped common list, not the user name) on every way a
password is set; a password below it must be changed at the next login (the session may do
nothing else); the self-service change asks for the current password."""

from __future__ import annotations

import aiohttp
import pytest

from backend.auth import accounts
from backend.auth.middleware import COOKIE, CSRF_HEADER
from backend.auth.policy import MIN_PASSWORD, common_passwords, password_problem
from tests.authhelp import TEST_PASSWORD, _hash, bearer
from tests.integration.auth.test_login import cookie_jar, db_rows, login

OLD = "hunter2"  # what a user could choose before the policy
NEW = "four loud lemons in a van"


def test_policy():
    assert password_problem("x" * (MIN_PASSWORD - 1)) is not None
    assert password_problem(TEST_PASSWORD) is None
    assert len(common_passwords()) >= 10_000  # the shipped list, not a handful
    for common in ("password1234", "Password2024!", "qwertyuiop123", "1q2w3e4r5t6y"):
        assert "common" in password_problem(common), common
    assert "user name" in password_problem("alice.smith-1", "alice.smith-1")
    assert password_problem("x" * 1025) is not None


async def test_policy_on_every_way_a_password_is_set(running):
    store = running.store
    with pytest.raises(ValueError, match="at least 12"):
        await accounts.add_user(store, "short", "viewer", OLD)
    with pytest.raises(ValueError, match="common"):
        await accounts.set_password(store, "viewer", "password1234")
    admin = bearer(running.tokens["admin"])
    async with aiohttp.ClientSession(running.url, headers=admin) as http:
        async with http.post("/api/users", json={"name": "eve", "role": "viewer",
                                                 "password": "qwertyuiop123"}) as r:
            assert r.status == 400 and "common" in (await r.json())["error"]
        async with http.patch("/api/users/viewer", json={"password": "viewer"}) as r:
            assert r.status == 400
        async with http.post("/api/users", json={"name": "eve", "role": "viewer"}) as r:
            generated = (await r.json())["password"]
    assert password_problem(generated, "eve") is None  # what the backend makes passes


async def test_a_weak_password_is_changed_at_the_next_login(running):
    await running.store.add_user("old", "dispatcher", _hash(OLD), all_vehicles=True)
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        status, body, _ = await login(http, "old", OLD)
        assert status == 200 and body["must_change_password"] is True
        csrf = {CSRF_HEADER: body["csrf_token"]}
        # until it is changed, this session may do nothing else
        for path in ("/api/vehicles", "/api/geofences"):
            async with http.get(path) as r:
                assert r.status == 403 and "password change" in (await r.json())["error"]
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/password"
        async with http.get("/password") as r:
            assert r.status == 200 and "new-password" in await r.text()
        async with http.get("/api/me") as r:
            assert (await r.json())["must_change_password"] is True
        # the current one is asked for, and the new one must pass the policy
        for current, new, status in ((NEW, NEW, 403), (OLD, "short", 400),
                                     (OLD, "password1234", 400), (OLD, "old", 400)):
            async with http.post("/api/me/password", headers=csrf,
                                 json={"current_password": current, "new_password": new}) as r:
                assert r.status == status, (current, new, await r.text())
        async with http.post("/api/me/password", json={"current_password": OLD,
                                                       "new_password": NEW}) as r:
            assert r.status == 403  # no CSRF token: not this page's request
        old_cookie = next(c for c in http.cookie_jar if c.key == COOKIE).value
        async with http.post("/api/me/password", headers=csrf,
                             json={"current_password": OLD, "new_password": NEW}) as r:
            assert r.status == 200
            changed = await r.json()
        assert changed["must_change_password"] is False
        assert changed["csrf_token"] != body["csrf_token"]  # a new session
        async with http.get("/api/vehicles") as r:
            assert r.status == 200
    # the old session ended with the change
    async with aiohttp.ClientSession(running.url, cookies={COOKIE: old_cookie}) as http:
        async with http.get("/api/me") as r:
            assert r.status == 401
    assert db_rows(running.db_url, "SELECT must_change_password FROM users "
                                   "WHERE name = 'old'") in ([(0,)], [(False,)])
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        assert (await login(http, "old", OLD))[0] == 401
        status, body, _ = await login(http, "old", NEW)
        assert status == 200 and body["must_change_password"] is False


async def test_self_service_change_with_a_token(running):
    token = bearer(running.tokens["viewer"])
    async with aiohttp.ClientSession(running.url, headers=token) as http:
        async with http.post("/api/me/password", json={"current_password": "wrong password!",
                                                       "new_password": NEW}) as r:
            assert r.status == 403
        async with http.post("/api/me/password", json={"current_password": TEST_PASSWORD,
                                                       "new_password": NEW}) as r:
            assert r.status == 200 and (await r.json())["user"]["name"] == "viewer"
        async with http.get("/api/me") as r:
            assert r.status == 200  # API tokens outlive a password change
    async with aiohttp.ClientSession(running.url, cookie_jar=cookie_jar()) as http:
        assert (await login(http, "viewer", NEW))[0] == 200
