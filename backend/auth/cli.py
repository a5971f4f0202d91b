"""`python -m backend users …` and `groups …`: accounts from the gateway host's shell.

Secrets are printed once on stdout (a generated password, a new token) and never logged;
`--password-stdin` reads a chosen password from the first line of stdin instead. Each change
is in the audit trail as done by "cli".
"""

from __future__ import annotations

import argparse
import json
import sys

from geostream.clock import wall_ms

CLI_USER = "cli"


def add_parsers(sub) -> None:
    users = sub.add_parser("users", help="dashboard/API accounts: add, list, passwd, disable, "
                           "enable, role, scope, token, tokens, revoke-token")
    u = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = u.add_parser("add", help="create a user; prints its generated password once")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["admin", "dispatcher", "viewer"])
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from stdin instead of generating one")
    add.add_argument("--all-vehicles", action="store_true",
                     help="see every vehicle (default: only those of the user's groups, none "
                     "until it is in one; admins see every vehicle anyway)")
    u.add_parser("list", help="list users as JSON lines")
    pw = u.add_parser("passwd", help="set a new password (generated unless --password-stdin); "
                      "ends the user's sessions")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    for verb, what in (("disable", "refuse logins, sessions and tokens of a user"),
                       ("enable", "allow a disabled user again")):
        u.add_parser(verb, help=what).add_argument("name")
    role = u.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "dispatcher", "viewer"])
    scope = u.add_parser("scope", help="which vehicles a user sees: all, or its groups' only")
    scope.add_argument("name")
    scope.add_argument("scope", choices=["all", "groups"])
    tok = u.add_parser("token", help="create an API token (Authorization: Bearer); prints it "
                       "once")
    tok.add_argument("name")
    tok.add_argument("--label", default="cli", help="what the token is for (default: cli)")
    u.add_parser("tokens", help="list a user's API tokens (ids and labels)").add_argument("name")
    rev = u.add_parser("revoke-token", help="delete one of a user's API tokens")
    rev.add_argument("name")
    rev.add_argument("token_id", type=int)

    groups = sub.add_parser("groups", help="vehicle groups: a user without the all-vehicles "
                            "scope sees only its groups' vehicles and geofences")
    g = groups.add_subparsers(dest="action", metavar="ACTION", required=True)
    g.add_parser("list", help="list groups as JSON lines")
    put = g.add_parser("set", help="create a group or replace its vehicles / members")
    put.add_argument("name")
    put.add_argument("--vehicle", action="append", help="vehicle id (repeatable)")
    put.add_argument("--member", action="append", help="user name (repeatable)")
    g.add_parser("delete", help="delete a group").add_argument("name")


def _stdin_password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise ValueError("no password on stdin")
    return line


async def _audit(store, action: str, target: str, detail: dict | None = None) -> None:
    await store.add_audit(wall_ms(), CLI_USER, action, target, detail)


def audited(action_fn, action: str, target: str):
    """`action_fn(store)`, recorded in the audit trail when it returns a true value."""
    async def go(store):
        result = await action_fn(store)
        if result:
            await _audit(store, action, target)
        return result

    return go


async def run(args: argparse.Namespace, store) -> int:
    """Carry out one `users`/`groups` command; the exit status."""
    from . import accounts  # here: `vehicles add` (audited) runs without the HTTP side

    if args.command == "groups":
        return await _groups(args, store)
    a = args.action
    try:
        if a == "add":
            password = _stdin_password() if args.password_stdin else None
            generated = await accounts.add_user(store, args.name, args.role, password,
                                                all_vehicles=args.all_vehicles)
            await _audit(store, "user.create", args.name,
                         {"role": args.role, "all_vehicles": args.all_vehicles})
            if generated:
                print(generated)
        elif a == "list":
            for user in await store.users():
                print(json.dumps(user))
        elif a == "passwd":
            password = _stdin_password() if args.password_stdin else None
            generated = await accounts.set_password(store, args.name, password)
            await _audit(store, "user.update", args.name, {"password_changed": True})
            if generated:
                print(generated)
        elif a in ("disable", "enable", "role", "scope"):
            change = ({"role": args.role} if a == "role" else
                      {"all_vehicles": args.scope == "all"} if a == "scope" else
                      {"disabled": a == "disable"})
            if not await store.update_user(args.name, **change):
                raise KeyError(args.name)
            await _audit(store, "user.update", args.name, change)
        elif a == "token":
            token_id, token = await accounts.add_token(store, args.name, args.label)
            await _audit(store, "token.create", args.name, {"id": token_id})
            print(token)
        elif a == "tokens":
            for t in await store.api_tokens(args.name):
                print(json.dumps(t))
        elif a == "revoke-token":
            if not await store.delete_api_token(args.name, args.token_id):
                print(f"no token {args.token_id} of {args.name!r}", file=sys.stderr)
                return 1
            await _audit(store, "token.delete", args.name, {"id": args.token_id})
    except KeyError:
        print(f"no user {args.name!r}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"backend users: {exc}", file=sys.stderr)
        return 2
    return 0


async def _groups(args: argparse.Namespace, store) -> int:
    from . import accounts

    if args.action == "list":
        for group in await store.groups():
            print(json.dumps(group))
    elif args.action == "set":
        try:
            accounts.check_name(args.name, "group name")
            await store.put_group(args.name, args.vehicle, args.member)
        except ValueError as exc:
            print(f"backend groups: {exc}", file=sys.stderr)
            return 2
        await _audit(store, "group.put", args.name,
                     {"vehicles": args.vehicle, "members": args.member})
    elif not await store.delete_group(args.name):
        print(f"no group {args.name!r}", file=sys.stderr)
        return 1
    else:
        await _audit(store, "group.delete", args.name)
    return 0
