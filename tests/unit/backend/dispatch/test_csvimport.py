"""CSV import: every broken row reported with its line and reason, and no job from a file
with any problem."""

import pytest

from backend.dispatch.codec import job_from_dict, job_to_dict
from backend.dispatch.csvimport import MAX_IMPORT_ROWS, ImportRefused, parse_jobs_csv
from backend.dispatch.model import JobKind

GOOD = """id,name,lat,lon,window_start,window_end,service_min,demand_kg,skills,kind,pair
j1,Kauppatori,60.1675,24.9525,2026-12-07T08:00Z,2026-12-07T10:00Z,5,120,fridge;tail-lift,,
p1,Pick,60.17,24.94,,,2,10,,pickup,d1
d1,Drop,60.18,24.93,,,2,10,,delivery,p1
"""


def test_good_file():
    jobs = parse_jobs_csv(GOOD.encode())
    assert [j.id for j in jobs] == ["j1", "p1", "d1"]
    j1 = jobs[0]
    assert j1.service_s == 300 and j1.demand.as_dict() == {"kg": 120}
    assert j1.skills == {"fridge", "tail-lift"}
    assert j1.windows[0].end_ms - j1.windows[0].start_ms == 2 * 3_600_000
    assert jobs[1].kind is JobKind.PICKUP and jobs[1].pair == "d1"
    assert job_from_dict(job_to_dict(j1)) == j1  # and the JSON codec round-trips


def test_every_broken_row_is_reported_and_nothing_imported():
    text = GOOD + "\n".join([
        "j2,Sea,91.5,24.9,,,,,,,",  # line 5: latitude out of range
        "j3,Late,60.1,24.9,2026-12-07T10:00Z,2026-12-07T09:00Z,,,,,",  # impossible window
        "j1,Again,60.1,24.9,,,,,,,",  # duplicate id
        "j4,Short,60.1",  # missing cells
        "j5,Neg,60.1,24.9,,,,-3,,,",  # negative demand
        "j6,Half,60.1,24.9,2026-12-07T10:00Z,,,,,,",  # window without an end
        "p2,Orphan,60.1,24.9,,,,,,pickup,d9",  # pair missing
    ]) + "\n"
    with pytest.raises(ImportRefused) as e:
        parse_jobs_csv(text)
    got = [(r.line, r.id, r.error.split(":")[0]) for r in e.value.errors]
    assert got == [(5, "j2", "lat"), (6, "j3", "time window"), (7, "j1", "id j1 also on line 2"),
                   (8, None, "3 cells, the header has 11"), (9, "j5", "kg"),
                   (10, "j6", "window"), (11, "p2", "p2")]


@pytest.mark.parametrize("data,first", [
    (b"", "empty file"), (b"\xff\xfeid\n", "not UTF-8"), (b"id,lat\n", "column 'lon'"),
    (b"id,lat,lon,colour\n", "unknown column 'colour'"), (b"id,lat,lon\n", "no rows"),
])
def test_file_level_problems(data, first):
    with pytest.raises(ImportRefused) as e:
        parse_jobs_csv(data)
    assert first in e.value.errors[0].error


def test_row_limit():
    rows = "".join(f"j{i},60.1,24.9\n" for i in range(MAX_IMPORT_ROWS + 1))
    with pytest.raises(ImportRefused, match=f"more than {MAX_IMPORT_ROWS} rows"):
        parse_jobs_csv("id,lat,lon\n" + rows)


def test_pair_may_name_an_existing_job():
    [p] = parse_jobs_csv("id,lat,lon,kind,pair\np1,60.1,24.9,pickup,d1\n",
                         existing=parse_jobs_csv("id,lat,lon,kind,pair\n"
                                                 "d1,60.1,24.9,delivery,p1\n"
                                                 "p1,60.1,24.9,pickup,d1\n")[:1])
    assert p.pair == "d1"
