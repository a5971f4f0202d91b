"""Jobs from a CSV file: every row checked, every problem reported with its line, and either
all jobs or none (docs/dispatch.md, "CSV import"). Pure: text in, jobs and errors out.

Columns (a header row; names are case-insensitive, order free; only `id`, `lat`, `lon`
required):

    id, name, lat, lon, radius_m, geofence_id, address,
    window_start, window_end, window2_start, window2_end   (ISO 8601 or ms since 1970),
    service_min | service_s, demand_<dimension> (demand_kg, demand_pallets …),
    skills (separated by ';'), priority, kind (visit | pickup | delivery), pair,
    notes, contact_name, contact_phone, contact_email
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from .codec import parse_time
from .model import (
    Amounts,
    Contact,
    Job,
    JobKind,
    Place,
    Point,
    TimeWindow,
    check_pairs,
)

# A day's jobs for a large depot fit easily; the whole file is checked in memory and stored in
# one transaction, which stays well under a second at this size.
MAX_IMPORT_ROWS = 10_000
# ~500 bytes a row at the row limit.
MAX_IMPORT_BYTES = 5 * 1024 * 1024
# Errors reported per file: enough to fix a broken export, bounded for the response.
MAX_ERRORS = 200

COLUMNS = {"id", "name", "lat", "lon", "radius_m", "geofence_id", "address", "window_start",
           "window_end", "window2_start", "window2_end", "service_min", "service_s", "skills",
           "priority", "kind", "pair", "notes", "contact_name", "contact_phone",
           "contact_email"}
DEMAND_PREFIX = "demand_"


@dataclass(frozen=True)
class RowError:
    """A problem with one line of the file (line 1 is the header; 0: the whole file)."""

    line: int
    error: str
    id: str | None = None

    def as_dict(self) -> dict:
        return {"line": self.line, "id": self.id, "error": self.error}


class ImportRefused(ValueError):
    """The file cannot be imported; `errors` says where and why (nothing was imported)."""

    def __init__(self, errors: list[RowError]):
        super().__init__(f"{len(errors)} problem(s), first: line {errors[0].line}: "
                         f"{errors[0].error}")
        self.errors = errors


def _float(row: dict, key: str) -> float:
    text = row.get(key, "").strip()
    if not text:
        raise ValueError(f"{key}: required")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{key}: not a number: {text!r}") from None


def _int(row: dict, key: str, default: int = 0) -> int:
    text = row.get(key, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{key}: not a whole number: {text!r}") from None


def _window(row: dict, prefix: str) -> TimeWindow | None:
    start, end = row.get(f"{prefix}_start", "").strip(), row.get(f"{prefix}_end", "").strip()
    if not start and not end:
        return None
    if not start or not end:
        raise ValueError(f"{prefix}: both {prefix}_start and {prefix}_end, or neither")
    return TimeWindow(parse_time(start, f"{prefix}_start"), parse_time(end, f"{prefix}_end"))


def job_from_row(row: dict) -> Job:
    """One CSV row (lower-case keys) as a job; ValueError names the column at fault."""
    if row.get("service_min", "").strip() and row.get("service_s", "").strip():
        raise ValueError("service_min and service_s: one of them")
    service = _int(row, "service_s") if row.get("service_s", "").strip() else None
    if service is None:
        text = row.get("service_min", "").strip()
        try:
            service = round(float(text) * 60) if text else 0
        except ValueError:
            raise ValueError(f"service_min: not a number: {text!r}") from None
    demand = {k[len(DEMAND_PREFIX):]: _int(row, k) for k in row if k.startswith(DEMAND_PREFIX)}
    radius = row.get("radius_m", "").strip()
    kind = row.get("kind", "").strip() or "visit"
    try:
        kind_ = JobKind(kind)
    except ValueError:
        raise ValueError(f"kind: visit, pickup or delivery, not {kind!r}") from None
    windows = tuple(w for w in (_window(row, "window"), _window(row, "window2")) if w)
    skills = [s.strip() for s in row.get("skills", "").split(";") if s.strip()]
    return Job(
        row.get("id", "").strip(),
        Place(Point(_float(row, "lat"), _float(row, "lon")),
              _float(row, "radius_m") if radius else 50.0,
              row.get("geofence_id", "").strip() or None, row.get("address", "").strip()),
        windows, service, Amounts.of(demand), frozenset(skills), _int(row, "priority"), kind_,
        row.get("pair", "").strip() or None, row.get("name", "").strip(),
        row.get("notes", ""),
        _contact(row))


def _contact(row: dict) -> Contact:
    try:
        return Contact(row.get("contact_name", "").strip(), row.get("contact_phone", "").strip(),
                       row.get("contact_email", "").strip())
    except ValueError as exc:  # named by the file's column
        raise ValueError(str(exc).replace("contact.email", "contact_email", 1)) from None


def parse_jobs_csv(data: bytes | str, existing: Iterable[Job] = ()) -> list[Job]:
    """The file's jobs, or ImportRefused with every problem found (up to MAX_ERRORS).
    `existing`: jobs already stored, which pickup/delivery pairs may name."""
    if isinstance(data, bytes):
        if len(data) > MAX_IMPORT_BYTES:
            raise ImportRefused([RowError(0, f"larger than {MAX_IMPORT_BYTES} bytes")])
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportRefused([RowError(0, f"not UTF-8 text ({exc.reason} at byte "
                                             f"{exc.start})")]) from None
    elif len(data) > MAX_IMPORT_BYTES:
        raise ImportRefused([RowError(0, f"larger than {MAX_IMPORT_BYTES} bytes")])
    data = data.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(data, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRefused([RowError(0, "empty file: a header row is required")]) from None
    except csv.Error as exc:
        raise ImportRefused([RowError(1, f"not CSV: {exc}")]) from None
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS and not n.startswith(DEMAND_PREFIX)]
    problems = []
    if unknown:
        problems.append(RowError(1, f"unknown column {unknown[0]!r} (known: "
                                    f"{', '.join(sorted(COLUMNS))}, demand_<dimension>)"))
    if len(set(names)) != len(names):
        problems.append(RowError(1, "a column appears twice"))
    for need in ("id", "lat", "lon"):
        if need not in names:
            problems.append(RowError(1, f"column {need!r} is required"))
    if problems:
        raise ImportRefused(problems)
    jobs: list[Job] = []
    errors: list[RowError] = []
    lines: dict[str, int] = {}
    rows = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(line, f"not CSV: {exc}"))
            break
        if not any(c.strip() for c in cells):
            continue  # blank line
        rows += 1
        if rows > MAX_IMPORT_ROWS:
            errors.append(RowError(line, f"more than {MAX_IMPORT_ROWS} rows"))
            break
        if len(cells) != len(names):
            errors.append(RowError(line, f"{len(cells)} cells, the header has {len(names)}"))
            continue
        row = dict(zip(names, cells, strict=True))
        rid = row.get("id", "").strip() or None
        try:
            job = job_from_row(row)
        except ValueError as exc:
            errors.append(RowError(line, str(exc), rid))
            continue
        if job.id in lines:
            errors.append(RowError(line, f"id {job.id} also on line {lines[job.id]}", job.id))
            continue
        lines[job.id] = line
        jobs.append(job)
        if len(errors) >= MAX_ERRORS:
            break
    if not jobs and not errors:
        errors.append(RowError(0, "no rows"))
    known = {j.id: j for j in existing}
    known.update({j.id: j for j in jobs})
    for problem in check_pairs(known.values()):
        jid = problem.split(":", 1)[0]
        if jid in lines:
            errors.append(RowError(lines[jid], problem, jid))
    if errors:
        raise ImportRefused(sorted(errors, key=lambda e: e.line)[:MAX_ERRORS])
    return jobs
