"""The in-cab tablet end to end through real processes (docs/driver.md, "The in-cab tablet"):
the agent serves the driver API over HTTPS on loopback with the certificate it made itself;
an unpaired client is refused, a code pairs once, and the paired tablet's actions, taken in a
blackout of the uplink (hil/ link emulator) with a kill -9 of the agent in between, land in
the journal and reach the real backend's applier exactly once, in order; so do a photo (with
EXIF GPS) and a signature taken in the blackout, re-encoded without their metadata and served
to the dispatcher (docs/protocol.md §4 "Images")."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PIL import Image

from agent.control import query
from tests.conftest import REPO, _env, wait_for
from tests.integration.net.test_agent_commands import http as api
from tests.integration.net.test_route_mailbox import (  # noqa: F401 (a fixture)
    CSV,
    applied_actions,
    emulator,
    import_jobs,
    route_body,
    routes_on_vehicle,
    wait_connected,
)


def cab(sock, *args: str) -> dict:
    """`fleet-agent cab ...` as the operator runs it on the vehicle."""
    out = subprocess.run([sys.executable, "-m", "agent", "cab", *args, "--json", "--socket",
                          str(sock)], capture_output=True, text=True, timeout=30, env=_env(),
                         cwd=REPO)
    return json.loads(out.stdout)


class Tablet:
    """An HTTPS client that trusts the vehicle's CA and checks the server key's pin, as a
    tablet that was set up once does; keeps the cookie the agent sets."""

    def __init__(self, origin: str, ca_file: str, pin: str):
        self.origin, self.pin = origin, pin
        self.ctx = ssl.create_default_context(cafile=ca_file)  # hostname 127.0.0.1: its SAN
        self.cookie = ""
        self.csrf = ""

    def call(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        u = urlsplit(self.origin)
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=self.ctx, timeout=15)
        try:
            conn.connect()
            der = conn.sock.getpeercert(binary_form=True)
            key = x509.load_der_x509_certificate(der).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            assert base64.b64encode(hashlib.sha256(key).digest()).decode() == self.pin
            h = {"Accept": "application/json", **(headers or {})}
            if self.cookie:
                h["Cookie"] = self.cookie
            if method != "GET" and self.csrf:
                h["X-CSRF-Token"] = self.csrf
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            raw = r.read()
            if cookie := r.getheader("Set-Cookie"):
                self.cookie = cookie.split(";", 1)[0]
            payload = json.loads(raw) if "json" in (r.getheader("Content-Type") or "") else {
                "location": r.getheader("Location")}
            return r.status, payload
        finally:
            conn.close()

    def pair(self, code: str) -> tuple[int, dict]:
        """One attempt, waiting out the agent's spacing of attempts (429 Retry-After)."""
        for _ in range(10):
            status, body = self.call("POST", "/api/cab/pair", {"code": code, "label": "cab"})
            if status != 429 or "burnt" in body["error"]:
                return status, body
            time.sleep(1.0)  # the agent's Retry-After: one attempt a second
        raise AssertionError("the agent kept asking to wait")


def act(tablet: Tablet, n: int, kind: str, job: str | None, **extra) -> tuple[int, dict]:
    body = {"key": f"cab-tab-{n:0>6}", "device_id": "cab-tab-1", "device_seq": n,
            "kind": kind, "job_id": job, "route_id": "r1", **extra}
    return tablet.call("POST", "/api/driver/actions", body)


def upload(tablet: Tablet, image: bytes, kind: str = "photo") -> tuple[int, dict]:
    u = urlsplit(tablet.origin)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=tablet.ctx, timeout=15)
    try:
        conn.request("POST", f"/api/driver/files?kind={kind}&job=a", body=image, headers={
            "Cookie": tablet.cookie, "X-CSRF-Token": tablet.csrf,
            "Content-Type": "image/png"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def photo_with_gps() -> bytes:
    """A camera's JPEG: noisy (several journal parts) and carrying the GPS position."""
    im = Image.frombytes("RGB", (320, 240), os.urandom(320 * 240 * 3))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (60.0, 10.0, 1.5), 3: "E", 4: (24.0, 56.0, 2.5)}
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def png(size=(300, 100)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 255).save(out, "PNG")
    return out.getvalue()


def stored_files(db_path) -> dict[str, tuple]:
    with sqlite3.connect(db_path, timeout=10) as db:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT id, driver_id, vehicle_id, kind, media_type, data FROM driver_files")}


def pod_file(procs, file_id: str) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{procs.http_port}/api/pod-files/{file_id}",
                                 headers={"Authorization": f"Bearer {procs.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def test_a_paired_tablets_actions_reach_the_backend_once_through_blackout_and_kill9(
        procs, emulator, tmp_path):  # noqa: F811 (the fixture imported above)
    from hil.linkemu import LinkEmulator

    loop, holder = emulator
    procs.provision("cab-1")
    procs.token = procs.api_token("dispatcher")
    procs.backend()
    emu = holder["emu"] = asyncio.run_coroutine_threadsafe(
        LinkEmulator(("127.0.0.1", procs.quic_port)).start(), loop).result(10)
    sock = procs.tmp / "cab-1.sock"
    config = procs.agent_config("cab-1", extra=(
        f'\n[status]\nsocket = "{sock}"\n\n[cab]\nenabled = true\nlisten = "127.0.0.1"\n'
        f'port = 0\ntls_dir = "{tmp_path}"\n'))
    config.write_text(config.read_text().replace(f"port = {procs.quic_port}",
                                                 f"port = {emu.address[1]}"))
    assert api(procs, "PUT", "/api/drivers/d1", {"display_name": "Aino"})[0] == 201

    def start_agent():
        agent = procs._spawn(["-m", "agent", "--config", str(config)], "cab-1.agent")
        wait_for(lambda: answers_cab(sock), 30, "the agent's control socket and cab server")
        return agent

    procs.gps_sim("cab-1", rate=5, count=5000)
    agent = start_agent()
    wait_connected(procs, "cab-1")
    import_jobs(procs, CSV)
    assert api(procs, "PUT", "/api/routes/r1",
                route_body(("a", "b")) | {"vehicle_id": "cab-1"})[0] == 201
    wait_for(lambda: routes_on_vehicle(procs.journal("cab-1")), 60, "the route on the vehicle")

    paired = cab(sock, "pair")
    assert paired["ok"] and len(paired["code"]) == 9
    tablet = Tablet(paired["url"].split("/pair")[0], paired["ca_file"], paired["pin"])
    # unpaired: nothing but the app's files and the pairing page
    assert tablet.call("GET", "/api/driver/shift")[0] == 401
    assert act(tablet, 1, "arrive", "a")[0] == 401
    status, body = tablet.call("GET", "/driver/")
    assert (status, body["location"]) == (302, "/login?next=/driver/")
    assert tablet.call("GET", "/login")[0] == 200
    assert tablet.pair("WRONG-CODE")[0] == 403
    status, body = tablet.pair(paired["code"])
    assert status == 200 and body["vehicle"] == "cab-1" and tablet.cookie
    intruder = Tablet(tablet.origin, paired["ca_file"], paired["pin"])
    assert intruder.pair(paired["code"])[0] == 403, "a code pairs once"
    assert intruder.call("GET", "/api/me")[0] == 401

    shown = subprocess.run([sys.executable, "-m", "agent", "status", "--socket", str(sock)],
                           capture_output=True, text=True, timeout=30, env=_env(), cwd=REPO)
    assert f"cab      serving {tablet.origin}  live apps 0" in shown.stdout, shown.stdout

    status, me = tablet.call("GET", "/api/me")
    assert status == 200 and me["cab"]["version"] == 1
    assert act(tablet, 1, "arrive", "a")[0] == 403, "a write needs the CSRF token"
    tablet.csrf = me["csrf_token"]
    status, _ = tablet.call("POST", "/api/driver/actions", {"key": "cab-tab-000009"},
                            headers={"Origin": "https://evil.example"})
    assert status == 403, "another site's page cannot write through the tablet's cookie"
    status, shift = tablet.call("GET", "/api/driver/shift")
    assert status == 200 and shift["route"]["id"] == "r1"
    assert [(s["id"], s["name"], s["state"]) for s in shift["stops"]] == [
        ("a", "Harbour office", "assigned"), ("b", "Depot B", "assigned")]

    # sizes and types are bounded at the edge
    assert act(tablet, 9, "message", None, text="x" * 20_000)[0] == 413
    assert act(tablet, 9, "arrive", "a", key="no")[0] == 400
    assert upload(tablet, b"GIF89a" + bytes(64))[0] == 415
    status, first_file = upload(tablet, png((40, 40)))
    assert status == 201 and first_file["id"].startswith("f")
    assert upload(tablet, png((40, 40))) == (200, first_file), "the same image: the same id"

    # the cellular link goes; the driver works on the tablet
    loop.call_soon_threadsafe(emu.blackout, 600.0)
    status, first = act(tablet, 1, "arrive", "a")
    assert status == 200 and first["action"]["outcome"] == "journaled" and not first["replay"]
    photo = photo_with_gps()
    status, photo_file = upload(tablet, photo)
    assert status == 201
    status, sig_file = upload(tablet, png(), "signature")
    assert status == 201
    pod = {"recipient": "Ana", "notes": "porch", "photos": [photo_file["id"]],
           "signature": sig_file["id"]}
    status, refused = act(tablet, 2, "complete", "a", pod=pod | {"photos": ["f" + "9" * 40]})
    assert status == 409 and refused["missing_files"] == ["f" + "9" * 40], \
        "an image the vehicle does not keep would never reach the backend"
    assert act(tablet, 2, "complete", "a", pod=pod)[0] == 200
    status, again = act(tablet, 2, "complete", "a", pod=pod)
    assert status == 200 and again["replay"], "a re-send is answered from the record"
    assert act(tablet, 2, "fail", "a", reason="x")[0] == 409, "same key, other body"
    agent.kill9()
    agent = start_agent()
    tablet.origin = cab(sock, "devices")["origin"]  # port 0: the new agent's port
    assert act(tablet, 1, "arrive", "a")[1]["replay"], "the record survived the kill -9"
    assert upload(tablet, photo) == (200, photo_file), "the image survived the kill -9"
    assert act(tablet, 3, "arrive", "b")[0] == 200
    status, shift = tablet.call("GET", "/api/driver/shift")
    assert [s["state"] for s in shift["stops"]] == ["completed", "arrived"]
    assert applied_actions(procs.db_path) == []

    loop.call_soon_threadsafe(emu.model.blackouts.clear)
    wait_for(lambda: len(applied_actions(procs.db_path)) >= 3, 60, "the actions applied")
    assert applied_actions(procs.db_path) == [
        ("cab-tab-000001", 1, "arrive", "vehicle"),
        ("cab-tab-000002", 2, "complete", "vehicle"),
        ("cab-tab-000003", 3, "arrive", "vehicle")]
    assert api(procs, "GET", "/api/jobs/a")[1]["state"] == "completed"
    # the images: each stored once, re-encoded, as the driver's of the shift
    files = stored_files(procs.db_path)
    assert set(files) == {first_file["id"], photo_file["id"], sig_file["id"]}
    assert files[photo_file["id"]][:4] == ("d1", "cab-1", "photo", "image/jpeg")
    assert files[sig_file["id"]][:4] == ("d1", "cab-1", "signature", "image/png")
    served = pod_file(procs, photo_file["id"])
    assert served == files[photo_file["id"]][4] and served != photo
    back = Image.open(io.BytesIO(served))
    assert back.format == "JPEG" and not back.getexif(), "no EXIF (GPS) in what is served"
    assert Image.open(io.BytesIO(pod_file(procs, sig_file["id"]))).format == "PNG"
    with sqlite3.connect(procs.db_path, timeout=10) as db:
        assert db.execute("SELECT count(*) FROM image_parts").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM dead_letter").fetchone() == (0,)

    # unpairing revokes at once
    [device] = cab(sock, "devices")["devices"]
    assert cab(sock, "unpair", device["id"])["removed"] == 1
    assert tablet.call("GET", "/api/driver/shift")[0] == 401
    assert agent.stop() == 0


def answers_cab(sock) -> bool:
    """The agent answers on its status socket with its cab server up."""
    try:
        return query(str(sock))["vehicle"] == "cab-1" and cab(sock, "devices")["ok"]
    except (OSError, ValueError):  # the killed agent's socket file, nobody listening yet
        return False
