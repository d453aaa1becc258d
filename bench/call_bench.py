"""`make bench`: our call pipeline beside a bare Pipecat pipeline, same services, same fakes, same run.

    .venv/bin/python -m bench.call_bench            # 3-4 minutes on 2 cores
    .venv/bin/python -m bench.call_bench --quick    # a little over a minute, coarser

What runs, in order (details in each module's docstring):

1. `micro`: CPU per frame through UsageMeter + BudgetGuard vs nothing and vs two
   passthrough processors, inside a PipelineWorker; and our Twilio serializer vs
   Pipecat's on an inbound media message.
2. `setup_time`: call set-up (`CallLifecycle.open` + `begin`) and the memories
   read, with 500 facts and 10 recent calls on SQLite.
3. `load`: the vendor fakes in one process, each server in its own (the bare
   baseline, and ours: the real `server.create_app` behind its Twilio webhook
   and media WebSocket), and simulated Twilio callers in this one, holding
   spoken conversations at real time. First a few calls on each server in
   turns (bare, ours, ours, bare: turn latency, set-up, CPU, like for like);
   then, on each server alone, calls added step by step until frames run
   late (p99 ≥ 40 ms).

It reports; it asserts nothing. The table goes to stdout and the same figures,
with every step, to bench/results/latest.json.
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
    light_calls: int  # light load: calls per run
    light_window: float  # ... seconds measured per run
    light_rounds: int  # ... rounds of (bare, ours) runs, alternating which goes first
    steps: list[int]  # calls at each load step
    window: float  # seconds measured per step
    settle: float  # seconds between adding calls and measuring
    spacing: float  # seconds between two new calls


FULL = Plan(frames=2000, repeats=3, setups=40, light_calls=4, light_window=12.0, light_rounds=2,
            steps=[8, 12, 15, 17, 19, 21, 23, 26, 30, 35, 40], window=6.0, settle=1.5, spacing=0.25)
QUICK = Plan(frames=1000, repeats=2, setups=15, light_calls=3, light_window=6.0, light_rounds=1,
             steps=[8, 14], window=4.0, settle=1.5, spacing=0.2)


def _say(text: str) -> None:
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


def run(plan: Plan, quick: bool, out: Path) -> dict[str, Any]:
    from bench.load import Server, run_light_load, run_ramp
    from bench.micro import measure_deserialize, measure_frame_costs
    from bench.procs import Child
    from bench.report import headline, machine_info, render
    from bench.setup_time import measure_setup

    started = time.monotonic()
    machine = machine_info()
    work = Path(tempfile.mkdtemp(prefix="callmeback-bench-"))
    _say(f"Call Me Back benchmark{' (quick)' if quick else ''}; logs and databases in {work}")
    _say("1/3 per-frame cost of our processors ...")
    costs = asyncio.run(measure_frame_costs(plan.frames, plan.repeats))
    deserialize_us = asyncio.run(measure_deserialize(5 * plan.frames))
    _say("2/3 call set-up and memories with 500 facts ...")
    setup = asyncio.run(measure_setup(work, plan.setups))
    _say("3/3 concurrent calls, bare Pipecat then ours ...")
    steps = {}
    fakes = Child("bench.fakes_proc", [], work / "fakes.log").ready()
    children: dict[str, Child] = {}
    try:
        for mode in ("bare", "ours"):  # both start (and warm up) side by side; each is measured alone
            children[mode] = Child("bench.server_proc", [
                "--mode", mode, "--fakes", json.dumps(fakes.info), "--dir", str(work),
                "--callers", str(max(plan.steps) + 2)], work / f"server-{mode}.log")
        servers = {mode: Server(mode, c.ready().info["port"], c.pid) for mode, c in children.items()}
        asyncio.run(_warm_up_all(list(servers.values())))
        own_pids = [fakes.pid, os.getpid()]
        _say(f"  light load: {plan.light_calls} calls, bare and ours in turns, {plan.light_rounds} round(s)")
        light = asyncio.run(run_light_load(servers, calls=plan.light_calls, window=plan.light_window,
                                           rounds=plan.light_rounds, own_pids=own_pids, log=_say))
        _say("  stepping up the number of calls")
        for mode, server in servers.items():
            steps[mode], _ramp = asyncio.run(run_ramp(
                server, plan.steps, own_pids=own_pids, window=plan.window,
                settle=plan.settle, spacing=plan.spacing, log=_say))
            children.pop(mode).stop()  # an idle server left running would only add noise
    finally:
        for child in children.values():
            child.stop()
        fakes.stop()
    seconds = time.monotonic() - started
    head = headline(costs, deserialize_us, setup, steps, light)
    _say("")
    _say(render(machine, head, costs, deserialize_us, steps, light, quick, seconds))
    result = _json_safe({
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick, "duration_s": round(seconds, 1), "machine": machine, "plan": dataclasses.asdict(plan),
        "headline": head, "per_frame_us": costs.us, "deserialize_us": deserialize_us,
        "setup_ms": {"open": setup.open_ms, "begin": setup.begin_ms, "memories": setup.memories_ms},
        "steps": {mode: [s.summary() for s in results] for mode, results in steps.items()},
        "light_load": {mode: [s.summary() for s in results] for mode, results in light.steps.items()},
        "logs": str(work),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _say(f"\nWrote {out}")
    return result


async def _warm_up_all(servers: list[Any]) -> None:
    from bench.load import warm_up

    await asyncio.gather(*(warm_up(server) for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer frames, steps and seconds")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    run(QUICK if args.quick else FULL, args.quick, args.out)


if __name__ == "__main__":
    main()
