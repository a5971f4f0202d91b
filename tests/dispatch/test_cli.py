"""`python -m backend jobs import FILE.csv` and `jobs list`."""

import json

from backend.cli import main

GOOD = "id,lat,lon,demand_kg\nj1,60.17,24.94,5\nj2,60.18,24.95,7\n"


def run(capsys, url, *args) -> tuple[int, str, str]:
    code = main(["--db", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_import_and_list(tmp_path, capsys):
    url = f"sqlite://{tmp_path / 'f.db'}"
    good = tmp_path / "jobs.csv"
    good.write_text(GOOD)
    assert run(capsys, url, "jobs", "import", str(good))[:2] == (
        0, '{"imported": 2, "unchanged": 0}\n')
    assert run(capsys, url, "jobs", "import", str(good))[1] == (
        '{"imported": 0, "unchanged": 2}\n')
    code, out, _ = run(capsys, url, "jobs", "list", "--state", "unassigned")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["id"], r["demand"]) for r in rows] == [("j1", {"kg": 5}),
                                                                    ("j2", {"kg": 7})]
    assert run(capsys, url, "jobs", "list", "--state", "completed")[1] == ""


def test_broken_file_reports_each_row_and_imports_nothing(tmp_path, capsys):
    url = f"sqlite://{tmp_path / 'f.db'}"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lat,lon\nok,60.1,24.9\nsea,91,24.9\n,60,24\n")
    code, out, err = run(capsys, url, "jobs", "import", str(bad))
    assert code == 2 and out == ""
    assert f"{bad}: line 3 (sea): lat" in err and f"{bad}: line 4: id" in err
    assert "nothing imported: 2 problem(s)" in err
    assert run(capsys, url, "jobs", "list")[1] == ""
    assert run(capsys, url, "jobs", "import", str(tmp_path / "missing.csv"))[0] == 2
