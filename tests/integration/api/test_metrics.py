"""GET /metrics: Prometheus text for the configured bearer token only; the figures come from
the running parts (a real agent → QUIC gateway → store flow, a live client, a failed login)."""

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.integration.api.apphelp import Api

TOKEN = "s3cret-metrics-token-for-tests"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_metrics_need_the_metrics_token(tmp_path):
    async with Api(f"sqlite://{tmp_path / 'f.db'}", metrics_token=TOKEN) as api:
        await api.call("GET", "/metrics", role=None, expect=401)
        await api.call("GET", "/metrics", role="admin", expect=401)  # a user token is not it
        await api.call("GET", "/metrics", role=None, expect=401,
                       headers={"Authorization": f"Bearer {TOKEN}x"})
        # a failed login and a live client show up in the figures
        await api.call("POST", "/api/login", role=None, expect=401,
                       body={"username": "nobody", "password": "wrong"})
        auth = {"Authorization": f"Bearer {await api.token('viewer')}"}
        async with api.client.ws_connect("/ws", headers=auth):
            _, text = await api.call("GET", "/metrics", role=None, expect=200, raw=True,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    got = samples(text)
    assert got[("fleet_failed_logins_total", ())] == 1
    assert got[("fleet_hub_subscribers", ())] == 1
    assert got[("fleet_readings_total", ())] == 0
    assert got[("fleet_ack_latency_seconds_count", ())] == 0


async def test_no_metrics_token_configured_refuses_everyone(tmp_path):
    async with Api(f"sqlite://{tmp_path / 'f.db'}") as api:
        await api.call("GET", "/metrics", role=None, expect=401,
                       headers={"Authorization": "Bearer "})


def test_metrics_of_a_real_flow(procs, tmp_path):
    config = tmp_path / "backend.toml"
    config.write_text(f'metrics_token = "{TOKEN}"\n')
    procs.provision("truck-m")
    procs.backend("--config", str(config))
    procs.gps_sim("truck-m", rate=10, count=30)
    agent = procs.agent("truck-m")
    wait_for(lambda: len(procs.stored("truck-m")) == 30, 40, "30 readings stored")

    def scrape() -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{procs.http_port}/metrics",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return samples(resp.read().decode())

    got = wait_for(lambda: (s := scrape())[("fleet_readings_total", ())] >= 30 and s, 10,
                   "readings counted")
    batches = got[("fleet_batches_total", ())]
    assert 1 <= batches <= 30
    # one latency observation per acknowledged batch, all within the largest bucket
    assert got[("fleet_ack_latency_seconds_count", ())] == batches
    assert got[("fleet_ack_latency_seconds_bucket", (("le", "10.0"),))] == batches
    assert got[("fleet_vehicles_connected", ())] == 1
    assert got[("fleet_dead_letters_total", ())] == 0
    assert got[("fleet_writer_backlog_rows", ())] == 0
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{procs.http_port}/metrics", timeout=10)
        raise AssertionError("anonymous /metrics answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    assert agent.stop() == 0
