"""The scheduled report: the lease holder e-mails yesterday's summary (PDF and CSV) once per
period to a real SMTP server (aiosmtpd, STARTTLS and AUTH); the PDF's page is saved as an image
in the test output, to be looked at."""

from __future__ import annotations

import email
import os
import shutil
from datetime import UTC, datetime
from email import policy
from pathlib import Path

from backend.notify.report import gather, render_png
from backend.notify.service import Notifier, channels_of
from backend.notify.settings import NotifySettings
from backend.store.rows import StoredReading

from .helpers import FakeClock
from .test_channels import PASSWORD, USER, smtp_server  # noqa: F401 (the fixture)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def drive(vehicle: str, start_ms: int, driving_min: int, idle_min: int) -> list[StoredReading]:
    """A position every 30 s: northwards at ~40 km/h, then parked."""
    out, lat = [], 60.1
    for i in range(2 * (driving_min + idle_min) + 1):
        moving = i < 2 * driving_min
        out.append(StoredReading(vehicle, 1, i + 1, start_ms + i * 30_000, "pos", lat=lat,
                                 lon=24.9, speed_kmh=40.0 if moving else 0.0,
                                 received_ms=start_ms))
        if moving:
            lat += 0.003  # ≈ 334 m per 30 s
    return out


async def test_the_daily_report_is_mailed_once_and_looks_right(smtp_server, pki,  # noqa: F811
                                                               tmp_path, sqlite_store):
    store = sqlite_store
    for v in ("van-1", "van-2"):
        await store.add_vehicle(v)
    await store.write(drive("van-1", ms("2026-12-05 08:00"), 60, 20)
                      + drive("van-2", ms("2026-12-05 09:00"), 30, 0), [])
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD)
    settings = NotifySettings.parse({
        "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "username": USER,
                 "password_file": str(secret), "sender": "fleet@example.com",
                 "ca_file": pki["ca"]},
        "report": {"every": "daily", "at": "07:00", "tz": "UTC", "to": ["boss@example.com"],
                   "title": "Fleet daily"}})
    clock = FakeClock(ms("2026-12-06 07:30"))
    notifier = Notifier(store, settings, channels_of(settings), clock=clock)
    try:
        assert (await notifier.tick()).get("reported") == 1
        assert "reported" not in await notifier.tick()  # once per period
        clock.advance(24 * 3600)
        assert (await notifier.tick()).get("reported") == 1  # the next day's
    finally:
        await notifier.stop()
    assert len(smtp_server.messages) == 2
    rcpt, content, secured, authenticated = smtp_server.messages[0]
    assert rcpt == ["boss@example.com"] and secured and authenticated
    msg = email.message_from_bytes(content, policy=policy.default)
    parts = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    stem = f"fleet-report-{ms('2026-12-06 07:00') // 1000}"
    assert parts[f"{stem}.pdf"][:5] == b"%PDF-"
    rows = parts[f"{stem}.csv"].splitlines()
    assert rows[0] == "vehicle,distance_km,driving_h,idle_h,stops_done,late,failed,alerts"
    van1 = rows[1].split(",")
    # 120 steps of ~333.6 m: 40.0 km; 1 h driving, 20 min idle
    assert van1[0] == "van-1" and abs(float(van1[1]) - 40.0) < 0.3
    assert (van1[2], van1[3]) == ("1.0", "0.33")
    assert rows[2].startswith("van-2,20.0") and rows[3].startswith("all,")
    # the page as an image, in the test output (and $FLEET_SCREENSHOT_DIR)
    rep = await gather(store, "Fleet daily", ms("2026-12-05 07:00"), ms("2026-12-06 07:00"),
                       "UTC")
    png = render_png(rep)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    shot = tmp_path / "fleet-report.png"
    shot.write_bytes(png)
    if os.environ.get("FLEET_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["FLEET_SCREENSHOT_DIR"]) / shot.name)
