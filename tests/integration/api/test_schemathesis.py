"""Schemathesis over backend/openapi.yaml against a throw-away backend on loopback, as an admin
and as a viewer: no server error, every status code and content type the server answers is in
the spec, what the spec allows is accepted and what it forbids is refused, responses match
their schemas. A fixed seed and a bounded number of examples per operation keep it
deterministic and within ~30 s for both roles.

`ignored_auth` is left out: the run sends one Bearer token on every request (-H), so the
check's "requests with broken credentials" still carry a valid token and are rightly
accepted; tests/integration/auth/test_routes_access.py checks 401 and 403 for every route
instead."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

import pytest
from argon2 import PasswordHasher

from backend.api import spec
from backend.api.common import ISO_TIME
from backend.auth import passwords
from backend.config import BackendConfig
from backend.service import Backend
from tests.authhelp import add_user_token

SPEC = "backend/openapi.yaml"
# Test cases per operation and phase: about 1,500 requests per role, 15-30 s on this machine.
MAX_EXAMPLES = 6
SEED = 22  # a fixed seed: the same cases every run, so a failure reproduces
# a guard against a hung run, not a speed check: 95-120 s were seen on a loaded 2-core machine
RUN_TIMEOUT_S = 240
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


METHODS = ("get", "put", "post", "delete", "patch")
# What a schema-valid request may be answered besides success: refused for the caller's role
# (403), for a limit (429), not found (404), a conflict (409), no credentials (401) ...
ACCEPTED = ["2xx", "3xx", 401, 403, 404, 409, 429]


def rule_operations(doc: dict) -> list[str]:
    """The operations whose 400 is a rule the schema cannot express (x-fleet-rule, directly or
    through components/responses/RuleViolation): only these may refuse a schema-valid request
    with 400."""
    out = []
    for item in doc["paths"].values():
        for method, op in item.items():
            if method not in METHODS:
                continue
            answer = op["responses"].get("400", {})
            if "$ref" in answer:
                answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
            if answer.get("x-fleet-rule"):
                out.append(op["operationId"])
    return sorted(out)


def config_toml(doc: dict) -> str:
    return (f"[[operations]]\ninclude-operation-id = {json.dumps(rule_operations(doc))}\n"
            "checks.positive_data_acceptance.expected-statuses = "
            f"{json.dumps(ACCEPTED + [400])}\n")


def test_rule_operations_are_named_in_the_spec():
    ops = rule_operations(spec.document())
    assert {"route", "trips", "createUser", "liveHub", "mcp", "fleetTroubleCodes",
            "vehicleTroubleCodes"} <= set(ops)
    assert "login" not in ops and "listAlerts" not in ops  # malformed only: BadRequest


def test_operations_taking_iso_times_may_refuse_a_day_that_does_not_exist():
    """An ISO `from`/`to` matching IsoTime may still name no day (2026-02-30): a rule, so every
    operation that takes one declares RuleViolation for its 400."""
    doc, missing = spec.document(), []
    for item in doc["paths"].values():
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = item.get("parameters", []) + op.get("parameters", [])
            refs = [p.get("$ref", "") for p in params]
            if any(r.endswith(("/FromIso", "/ToIso")) for r in refs):
                missing += [] if op["operationId"] in rule_operations(doc) else [op["operationId"]]
    assert missing == []


def test_iso_time_in_the_spec_is_the_servers():
    """The spec's IsoTime pattern takes what the server's ISO_TIME takes, and no empty value
    (the server refuses `from=` with 400)."""
    pattern = re.compile(spec.document()["components"]["schemas"]["IsoTime"]["pattern"])
    for value in ("2026-12-06", "2026-12-06T13:30", "2026-12-06 13:30:05.123456+01:00",
                  "2026-12-06Z", "", "2026-12-6", "13:30", "2026-12-06T13"):
        assert bool(pattern.search(value)) == bool(ISO_TIME.fullmatch(value)), repr(value)


@pytest.mark.timeout(420)  # the run's own guard (RUN_TIMEOUT_S) fires first
@pytest.mark.parametrize("role", ["admin", "viewer"])
async def test_the_server_keeps_its_spec(role, tmp_path, pki, monkeypatch):
    config = BackendConfig(db=f"sqlite://{tmp_path / 'fleet.db'}", quic_host="127.0.0.1",
                           quic_port=0, http_host="127.0.0.1", http_port=0,
                           cert=pki["cert"], key=pki["key"],
                           ticket_file=str(tmp_path / "tickets.sqlite"))
    # Argon2 at its real cost (64 MiB, ~0.1 s a hash) would spend most of the run creating
    # users: this backend is thrown away, so its hashes may be cheap
    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024))
    backend = Backend(config)
    await backend.start()
    try:
        token = await add_user_token(backend.store, role, role)
        await backend.store.add_vehicle("truck-1")  # one vehicle to find
        st = os.path.join(os.path.dirname(sys.executable), "st")
        config = tmp_path / "schemathesis.toml"
        config.write_text(config_toml(spec.document()))
        proc = await asyncio.create_subprocess_exec(
            st, "--config-file", str(config), "run", SPEC, "--url", f"http://127.0.0.1:{backend.http_port}",
            "-H", f"Authorization: Bearer {token}", "--checks", "all",
            "--exclude-checks", "ignored_auth", "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED), "--workers", "1", "--no-shrink", "--no-color",
            "--report-dir", str(tmp_path / "report"),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
        async with asyncio.timeout(RUN_TIMEOUT_S):
            out, _ = await proc.communicate()
    finally:
        await backend.stop()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, (text[text.index("FAILURES"):] if "FAILURES" in text
                                  else text)[-12000:]
