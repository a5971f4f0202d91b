"""`python -m backend notifications list|subscribe|unsubscribe|deliveries`: notification
subscriptions through the running backend's HTTP API as the user of an API token, so the
rules are the API's (backend/notify/manage.py): a viewer subscribes for themself, only an
admin for a group or for the customers' dispatch mails."""

from __future__ import annotations

import argparse
import json
import sys

from ..cli_command import add_api_flags, api_session
from ..config import BackendConfig

PATH = "/api/notifications/subscriptions"


def notifications_parser(sub) -> None:
    n = sub.add_parser("notifications", help="list, make and delete notification "
                       "subscriptions through the running backend's HTTP API "
                       "(docs/notifications.md)")
    nsub = n.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = nsub.add_parser("list", help="your subscriptions as JSON lines")
    ls.add_argument("--all", action="store_true", help="everyone's (an admin)")
    s = nsub.add_parser("subscribe", help="make one; prints it as JSON (a webhook's signing "
                        "secret only here)")
    s.add_argument("body", help='the subscription as JSON, e.g. \'{"events": '
                   '["job.completed"], "channel": "email", "target": "ops@example.com"}\'')
    u = nsub.add_parser("unsubscribe", help="delete one")
    u.add_argument("id", type=int)
    d = nsub.add_parser("deliveries", help="one's delivery log as JSON lines, newest first")
    d.add_argument("id", type=int)
    for p in (ls, s, u, d):
        add_api_flags(p)


async def run_notifications(config: BackendConfig, args: argparse.Namespace) -> int:
    if args.action == "subscribe":
        try:
            body = json.loads(args.body)
        except ValueError as exc:
            print(f"backend notifications: the body is not JSON: {exc}", file=sys.stderr)
            return 2
    try:
        base, session = api_session(config, args)
    except (OSError, ValueError) as exc:
        print(f"backend notifications: {exc}", file=sys.stderr)
        return 2
    async with session as http:
        if args.action == "list":
            r = await http.get(f"{base}{PATH}", params={"all": str(args.all).lower()})
        elif args.action == "subscribe":
            r = await http.post(f"{base}{PATH}", json=body)
        elif args.action == "unsubscribe":
            r = await http.delete(f"{base}{PATH}/{args.id}")
        else:
            r = await http.get(f"{base}{PATH}/{args.id}/deliveries")
        async with r:
            answer = await r.json() if r.content_type == "application/json" else {}
            if r.status >= 300:
                print(f"backend notifications: HTTP {r.status}: "
                      f"{answer.get('error', r.reason)}", file=sys.stderr)
                return 1
    if args.action == "list":
        for row in answer["subscriptions"]:
            print(json.dumps(row))
    elif args.action == "deliveries":
        for row in answer["deliveries"]:
            print(json.dumps(row))
    elif args.action == "subscribe":
        print(json.dumps(answer))
    return 0
