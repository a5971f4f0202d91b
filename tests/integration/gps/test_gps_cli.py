"""`fleet-agent nmea-decode` as a user runs it."""

import io
import json
import subprocess
import sys

from agent.gps.cli import main


def run(argv, stdin: bytes, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_garbage_on_stdin_exits_zero_with_counts(monkeypatch, capsys):
    code, out, err = run(["-"], bytes(range(256)) * 20 + b"$GPGGA,12\n", monkeypatch, capsys)
    assert code == 0 and out == ""
    counts = json.loads(err)
    assert counts["noise_bytes"] > 0 and counts.get("fixes", 0) == 0


def test_missing_file_is_an_io_error(tmp_path, capsys):
    assert main([str(tmp_path / "absent.nmea")]) == 1
    assert "absent.nmea" in capsys.readouterr().err


def test_missing_checksums_only_with_the_flag(nmea, monkeypatch, capsys):
    lines = [nmea("GPRMC,101500.00,A,5130.0000,N,00007.5000,W,10.0,90.0,010626,,,A"),
             nmea("GPGGA,101500.00,5130.0000,N,00007.5000,W,1,07,1.1,30.0,M,47.0,M,,")]
    bare = b"".join(line.split(b"*")[0] + b"\r\n" for line in lines)
    code, out, err = run(["-"], bare, monkeypatch, capsys)
    assert out == "" and json.loads(err)["no_checksum"] == 2
    code, out, err = run(["--allow-missing-checksum", "-"], bare, monkeypatch, capsys)
    fix = json.loads(out)
    assert code == 0 and fix["lat"] == 51.5 and fix["lon"] == -0.125
    assert fix["time"] == "2026-06-01T10:15:00.000Z" and fix["speed_kmh"] == 18.52


def test_decimate_flag_thins_a_parked_vehicle(nmea, monkeypatch, capsys):
    data = b"".join(  # a 10 Hz receiver, parked for 4 s
        nmea(f"GPRMC,1015{t // 10:02d}.{t % 10}0,A,5130.0000,N,00007.5000,W,0.0,90.0,010626,,,A")
        for t in range(40))
    _, full, _ = run(["-"], data, monkeypatch, capsys)
    _, thin, err = run(["--decimate", "-"], data, monkeypatch, capsys)
    assert len(full.splitlines()) == 40
    times = [json.loads(line)["time"][-10:] for line in thin.splitlines()]
    assert times == ["15:00.000Z", "15:01.000Z", "15:02.000Z", "15:03.000Z"]  # 1 Hz parked
    assert json.loads(err)["decimated"] == 36


def test_module_entry_point(corpus):
    proc = subprocess.run([sys.executable, "-m", "agent", "nmea-decode",
                           str(corpus / "sirf_gp.nmea")], capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 12
