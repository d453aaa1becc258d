"""`make bench`: our call pipeline beside a bare Pipecat pipeline, same services, same fakes, same run.

    .venv/bin/python -m bench.call_bench            # about 9-12 minutes on 2 cores
    .venv/bin/python -m bench.call_bench --quick    # about 3-4 minutes, coarser

What runs, in order (details in each module's docstring):

1. `micro`: CPU per frame through UsageMeter + BudgetGuard vs nothing and vs two
   passthrough processors, inside a PipelineWorker; our Twilio serializer vs Pipecat's.
2. `setup_time`: call set-up (`CallLifecycle.open` + `begin`) and the memories read,
   with 500 facts and 10 recent calls on SQLite, beside bare SQLite round trips.
3. `capacity` + `load` + `disturb`: the vendor fakes in one process, bare and ours
   each in its own (ours: the real `server.create_app` behind its Twilio webhook and
   media WebSocket), simulated Twilio callers in this one, talking at real time. Both
   searches start from below and take turns, one level each per round; a level is N
   calls from dial to hang-up: steady window, memory after every call's first turn,
   a burst of new calls (first levels), churn (calls ending and replaced).
4. The per-machine run: `os.cpu_count()` processes of ours on one shared database
   (PostgreSQL when it answers on 127.0.0.1:5432, else SQLite in WAL mode), callers
   round-robin, its own search from below, against bare's single process.

It reports; it asserts nothing. The table goes to stdout and the same figures,
with every level, to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loguru import logger

RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Plan:
    frames: int  # per-frame micro-benchmark: frames per run
    repeats: int  # ... and runs per pipeline and frame kind
    setups: int  # timed call set-ups
    start: int  # the first load level (calls); it should pass on any machine
    growth: float  # ... multiplied by this while levels pass
    resolution: float  # bisection stops when the gap is within this share of the last pass
    max_levels: int  # levels per side at most
    window: float  # seconds of each level's steady window
    first_window: float  # ... of the first level (light load: turn latency, set-up)
    spacing: float  # seconds between two new calls while a level fills
    churn_fraction: float  # share of a level's calls that end and are replaced
    burst: int  # new calls at once in a burst
    burst_levels: int  # how many of the first levels have a burst
    multi_growth: float  # the per-machine run's search
    multi_resolution: float
    multi_max_levels: int


FULL = Plan(frames=2000, repeats=3, setups=40, start=4, growth=2.0, resolution=0.15, max_levels=8, window=6.0,
            first_window=12.0, spacing=0.2, churn_fraction=0.25, burst=4, burst_levels=2, multi_growth=1.5,
            multi_resolution=0.15, multi_max_levels=5)
QUICK = Plan(frames=400, repeats=1, setups=8, start=6, growth=2.0, resolution=0.5, max_levels=3, window=3.0,
             first_window=4.0, spacing=0.15, churn_fraction=0.25, burst=4, burst_levels=1, multi_growth=1.5,
             multi_resolution=0.5, multi_max_levels=2)


_T0 = time.monotonic()


def _say(text: str) -> None:
    """Progress lines; the phases carry the seconds since the start, so slow phases show."""
    if text[:2].strip() and text[0].isdigit():
        text = f"{text}  [{time.monotonic() - _T0:.0f} s]"
    print(text, flush=True)


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: it becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


async def _warm_up(session: Any) -> dict[int, int]:
    """One short call per server, so first-use costs are not measured; then each server's idle RSS."""
    import httpx

    from bench.load import wait_quiet
    from bench.procs import rss_bytes

    async with httpx.AsyncClient(timeout=30) as client:
        calls = await session.dial_many(client, len(session.servers), 0.1)
        await session.wait_for(calls, lambda r: r.turns_done >= 1, 25)
        await session.hang_up(client, list(session.calls))
    await wait_quiet(session, 6.0)
    session.forget_before(time.monotonic())
    return {s.pid: rss_bytes(s.pid) for s in session.servers}


async def _load(plan: Plan, fakes: Any, work: Path) -> dict[str, Any]:
    from bench import servers as srv
    from bench.capacity import Search, Side, search_alone, search_alternating
    from bench.load import LevelPlan
    from bench.session import Session, loop_lag_sampler

    caller_loop: list[tuple[float, float]] = []
    sampler = asyncio.get_running_loop().create_task(loop_lag_sampler(caller_loop))
    own_pids = [fakes.pid, os.getpid()]
    level = LevelPlan(window=plan.window, spacing=plan.spacing, churn_fraction=plan.churn_fraction, burst=plan.burst)
    children = {m: srv.start(m, fakes.info, work, name=m) for m in ("bare", "ours")}  # start side by side
    try:
        for child in children.values():
            await asyncio.to_thread(child.ready)
        sessions = {m: Session([srv.as_server(m, c)]) for m, c in children.items()}
        idle = dict(zip(sessions, await asyncio.gather(*(_warm_up(s) for s in sessions.values()))))
        sides = {m: Side(sessions[m], Search(plan.start, plan.growth, plan.resolution, plan.max_levels),
                         idle[m], level) for m in ("bare", "ours")}
        _say(f"  searching from {plan.start} calls up, bare and ours taking turns")
        order = await search_alternating(sides, own_pids=own_pids, caller_loop=caller_loop,
                                         first_window=plan.first_window, burst_levels=plan.burst_levels, log=_say)
    finally:
        for child in children.values():
            child.stop()  # the per-machine run has the machine to itself
    count = os.cpu_count() or 1
    url, what = await asyncio.to_thread(srv.shared_database, work)
    _say(f"4/4 one machine: {count} processes of ours on one database: {what}")
    workers: list[Any] = []
    multi: dict[str, Any] | None = None
    try:
        workers = await asyncio.to_thread(srv.start_workers, count, fakes.info, work, url)
        session = Session([srv.as_server("ours", c) for c in workers])
        multi_idle = await _warm_up(session)
        start = max(2, sides["bare"].search.capacity)
        side = Side(session, Search(start, plan.multi_growth, plan.multi_resolution, plan.multi_max_levels),
                    multi_idle, dataclasses.replace(level, burst=0))
        multi = {"side": side, "processes": count, "database": what}
        await search_alone(side, own_pids=own_pids, caller_loop=caller_loop, log=_say)
    except Exception as exc:  # the single-process figures still stand; say what went wrong
        _say(f"  the per-machine run stopped: {exc.__class__.__name__}: {exc} (logs in {work})")
    finally:
        for child in workers:
            child.stop()
        await asyncio.to_thread(srv.drop_database, url)
        sampler.cancel()
    return {"sides": sides, "order": order, "multi": multi}


def run(plan: Plan, quick: bool, out: Path) -> dict[str, Any]:
    from bench.headline import headline
    from bench.micro import measure_deserialize, measure_frame_costs
    from bench.procs import Child
    from bench.report import machine_info, render
    from bench.setup_time import measure_setup

    started = time.monotonic()
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="callmeback-bench-"))
    _say(f"Call Me Back benchmark{' (quick)' if quick else ''}; logs and databases in {work}")
    _say("1/4 per-frame cost of our processors ...")
    costs = asyncio.run(measure_frame_costs(plan.frames, plan.repeats))
    deserialize_us = asyncio.run(measure_deserialize(5 * plan.frames))
    _say("2/4 call set-up and memories with 500 facts, beside bare SQLite round trips ...")
    setup = asyncio.run(measure_setup(work, plan.setups))
    _say("3/4 concurrent calls, one process each: bare Pipecat and ours in turns ...")
    fakes = Child("bench.fakes_proc", [], work / "fakes.log").ready()
    try:
        load = asyncio.run(_load(plan, fakes, work))
    finally:
        fakes.stop()
    seconds = time.monotonic() - started
    head = headline(costs, deserialize_us, setup, load["sides"], load["multi"])
    multi_steps = load["multi"]["side"].steps if load["multi"] else []
    _say("")
    _say(render(machine, head, costs, deserialize_us, load["order"], multi_steps, quick, seconds))
    result = _json_safe({
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick, "duration_s": round(seconds, 1), "machine": machine, "plan": dataclasses.asdict(plan),
        "headline": head, "per_frame_us": costs.us, "deserialize_us": deserialize_us,
        "setup_ms": {"open": setup.open_ms, "begin": setup.begin_ms, "memories": setup.memories_ms,
                     "sqlite_read": setup.sqlite_read_ms, "sqlite_write": setup.sqlite_write_ms},
        "levels": [s.summary() for s in load["order"]],
        "per_machine_levels": [s.summary() for s in multi_steps],
        "logs": str(work),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _say(f"\nWrote {out}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 3 minutes: fewer frames, levels and seconds")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    run(QUICK if args.quick else FULL, args.quick, args.out)


if __name__ == "__main__":
    main()
