"""`python -m backend jobs …`: import a CSV file of jobs, list jobs (JSON lines), plan a
shift (backend/dispatch/plan_cli.py), straight on the store (docs/dispatch.md). A running
backend's live view learns of imported jobs when they are next read (the web app's table), not
through the hub."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .model import JobState


def jobs_parser(sub) -> None:
    j = sub.add_parser("jobs", help="dispatch jobs: import a CSV file, list them")
    jsub = j.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = jsub.add_parser("import", help="import jobs from a CSV file (all or none; every "
                          "broken row is reported with its line)")
    imp.add_argument("file", help="the CSV file (columns: docs/dispatch.md); - = stdin")
    ls = jsub.add_parser("list", help="list jobs as JSON lines, by id")
    ls.add_argument("--state", action="append", default=[],
                    choices=[s.value for s in JobState], help="only these states (repeatable)")
    ls.add_argument("--route", help="only the jobs of this route")
    from .plan_cli import add_plan_parser
    from .speeds_cli import add_learn_parser

    add_plan_parser(jsub)
    add_learn_parser(jsub)


async def run_jobs(args, store, now_ms: int, out=None, err=None) -> int:
    # here, not at the top: every command builds the parser (`jobs_parser`)
    from . import codec
    from .csvimport import MAX_IMPORT_BYTES, ImportRefused
    from .service import Dispatcher
    from .storage import MAX_JOBS_PAGE, JobExists, JobQuery

    out, err = out or sys.stdout, err or sys.stderr
    if args.action == "plan":
        from .plan_cli import run_plan

        return await run_plan(args, store, now_ms, out, err)
    if args.action == "learn-speeds":
        from .speeds_cli import run_learn

        return await run_learn(args, store, now_ms, out, err)
    if args.action == "import":
        if args.file == "-":
            data = sys.stdin.buffer.read(MAX_IMPORT_BYTES + 1)
        else:
            with Path(args.file).open("rb") as f:
                data = f.read(MAX_IMPORT_BYTES + 1)
        try:
            result = await Dispatcher(store).import_csv(data, now_ms)
        except ImportRefused as exc:
            for e in exc.errors:
                where = f"line {e.line}" + (f" ({e.id})" if e.id else "")
                print(f"{args.file}: {where}: {e.error}", file=err)
            print(f"nothing imported: {len(exc.errors)} problem(s)", file=err)
            return 2
        except JobExists as exc:
            print(f"nothing imported: {exc}", file=err)
            return 2
        print(json.dumps({k: result[k] for k in ("imported", "unchanged")}), file=out)
        return 0
    states = tuple(JobState(s) for s in args.state)
    after = None
    while True:
        page = await store.jobs(JobQuery(states, args.route, None, after, MAX_JOBS_PAGE))
        for rec in page:
            print(json.dumps(codec.record_to_dict(rec), separators=(",", ":")), file=out)
        if len(page) < MAX_JOBS_PAGE:
            return 0
        after = page[-1].job.id
