"""`python -m backend jobs plan --from T --to T [--approve]`: plan a shift straight on the store
(the solver in its own process, on `--road-network` if given), print the proposal as JSON and,
with `--approve`, write its routes (refused, exit 3, if the state moved meanwhile)."""

from __future__ import annotations

import json
from pathlib import Path


def add_plan_parser(jsub) -> None:
    p = jsub.add_parser("plan", help="plan a shift's routes (and approve them with --approve)")
    p.add_argument("--from", dest="shift_from", required=True,
                   help="shift start: ISO 8601 (naive: UTC) or ms since 1970")
    p.add_argument("--to", dest="shift_to", required=True, help="shift end (≤ 24 h later)")
    p.add_argument("--vehicle", action="append", default=None,
                   help="plan only these vehicles (repeatable; default all)")
    p.add_argument("--time-limit", type=float, default=None, help="solver seconds (default 14)")
    p.add_argument("--approve", action="store_true", help="write the planned routes")


async def run_plan(args, store, now_ms: int, out, err) -> int:
    # here, not at the top: every command builds the parser, only `jobs plan` needs the
    # planner (numpy, the road graph)
    from .codec import parse_time
    from .matrix import SnapError
    from .model import Actor, ActorKind, Shift
    from .planner import PlanError
    from .planning import PlanningError, PlanningService, ProposalStale, proposal_json
    from .service import Dispatcher
    from .solver_worker import SolverWorker

    try:
        shift = Shift(parse_time(args.shift_from, "--from"), parse_time(args.shift_to, "--to"))
    except ValueError as exc:
        print(f"plan: {exc}", file=err)
        return 2
    road = getattr(args, "road_network", None)
    cache = getattr(args, "road_cache_dir", None)
    worker = SolverWorker(Path(road) if road else None, Path(cache) if cache else None)
    svc = PlanningService(store, Dispatcher(store), worker, lambda: now_ms)
    try:
        kept = await svc.plan(shift, "cli", args.vehicle, args.time_limit)
        print(json.dumps(proposal_json(kept), ensure_ascii=False), file=out)
        if args.approve:
            done = await svc.approve(kept.proposal.id, Actor(ActorKind.PERSON, "cli"))
            print(json.dumps({"approved": kept.proposal.id, "routes": len(done["routes"])}),
                  file=out)
        return 0
    except ProposalStale as exc:
        print(f"plan: not approved: {exc}", file=err)
        return 3
    except (PlanningError, PlanError, SnapError) as exc:
        print(f"plan: {exc}", file=err)
        return 2
    finally:
        await svc.close()
