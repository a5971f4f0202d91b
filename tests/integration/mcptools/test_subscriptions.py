"""Notification subscriptions through the MCP tools (over streamable HTTP, the backend's
access middleware), with the HTTP API's rules (backend/notify/manage.py): a viewer subscribes
for themself, only an admin for a group or for the customers' dispatch mails, a driver login
not at all; one sees and deletes only one's own (an admin: everyone's). The CLI's test is
test_subscriptions_cli.py."""

from __future__ import annotations

from backend.authz import Principal, Role
from backend.mcp.tools import FleetTools, Refused
from tests.authhelp import add_user_token
from tests.integration.mcptools.test_mcp import backend, call, http_client  # noqa: F401

MAIL = {"events": ["job.completed"], "channel": "email", "target": "ops@example.com"}


async def test_subscriptions_over_mcp_with_the_apis_rules(backend):  # noqa: F811
    admin_token = await add_user_token(backend.store, "boss", "admin")
    async with http_client(backend.url, backend.tokens["viewer"]) as viewer:
        mine = await call(viewer, "subscribe", subscription=MAIL)
        assert mine["subscription"]["owner"] == "viewer" and "secret" not in mine
        for body, why in (({**MAIL, "group": "north"}, "only an admin subscribes for a group"),
                          ({"events": ["job.dispatched"], "channel": "customer"},
                           "only an admin"),
                          ({**MAIL, "target": "ops@"}, "not an e-mail address")):
            refused = await viewer.call_tool("subscribe", {"subscription": body})
            assert refused.is_error and why in refused.content[0].text, refused.content
        async with http_client(backend.url, admin_token) as admin:
            group = await call(admin, "subscribe", subscription={**MAIL, "group": "north"})
            everyone = await call(admin, "list_subscriptions", every=True)
            assert {s["id"] for s in everyone["subscriptions"]} == {
                mine["subscription"]["id"], group["subscription"]["id"]}
        own = await call(viewer, "list_subscriptions", every=True)  # not an admin: own only
        assert [s["id"] for s in own["subscriptions"]] == [mine["subscription"]["id"]]
        other = await viewer.call_tool("unsubscribe",
                                       {"subscription_id": group["subscription"]["id"]})
        assert other.is_error and "no subscription" in other.content[0].text
        gone = await call(viewer, "unsubscribe", subscription_id=mine["subscription"]["id"])
        assert gone == {"deleted": mine["subscription"]["id"]}
    rows = await backend.store.subscriptions()
    assert [(r["owner"], r["group"]) for r in rows] == [("boss", "north")]
    audit = [(a["user"], a["action"])
             for a in await backend.store.audit_entries(0, 4_102_444_800_000, 50)]
    assert ("viewer", "notify.unsubscribe") in audit and ("boss", "notify.subscribe") in audit


async def test_a_driver_login_has_no_subscriptions(backend):  # noqa: F811
    tools = FleetTools(backend.store)
    driver = Principal(7, "drv-d1", Role.ADMIN, None, via="token", driver_id="d1")
    for fn, args in ((tools.subscribe, ({**MAIL, "group": "north"},)),
                     (tools.subscribe, (MAIL,)), (tools.list_subscriptions, ()),
                     (tools.unsubscribe, (1,))):
        try:
            await fn(driver, *args)
        except Refused as exc:
            assert "driver login" in str(exc)
        else:
            raise AssertionError(f"{fn.__name__} accepted a driver login")
    assert await backend.store.subscriptions() == []
