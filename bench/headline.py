"""The headline figures, each beside bare Pipecat's from the same run and the target (DESIGN.md section 9).

Comparisons are like for like: CPU, turn latency and lateness at the levels both
sides ran and passed (the lockstep search gives them the same levels while both
pass); memory at the largest such level that was a high-water mark on both
servers, read after every call's first full turn; capacity as each side's own
result of the search from below; the per-machine run against bare's single
process; the burst figures pooled over every burst of the run.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.capacity import Side
from bench.load import Step
from bench.micro import FrameCosts, processors_us_per_call_second
from bench.setup_time import SetupResult
from bench.stats import percentile

NAN = float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b else NAN


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else NAN


def common_passed(sides: dict[str, Side]) -> list[int]:
    passed = [{s.level for s in side.steps if s.passed} for side in sides.values()]
    return sorted(set.intersection(*passed)) if passed else []


def _at(side: Side, counts: list[int]) -> list[Step]:
    return [s for s in side.steps if s.level in counts]


def _pooled_cpu(steps: list[Step]) -> float:
    call_s = sum(s.call_s for s in steps)
    return 1000 * sum(s.cpu_s for s in steps) / call_s if call_s else NAN


def _pooled_frames(steps: list[Step]) -> dict[str, float]:
    total = sum(s.call_s for s in steps)
    keys = {k for s in steps for k in s.frames_per_call_s}
    return {k: sum(s.frames_per_call_s.get(k, 0.0) * s.call_s for s in steps) / total for k in sorted(keys)} \
        if total else {}


def _memory(sides: dict[str, Side]) -> dict[str, Any]:
    ok = [{s.level: s for s in side.steps if s.rss_fresh and s.rss_after_turn == s.level and s.level >= 2}
          for side in sides.values()]
    common = set.intersection(*(set(d) for d in ok)) if ok else set()
    at = max(common, default=0)
    per = {mode: d[at].rss_mb_per_call if at else NAN for mode, d in zip(sides, ok)}
    return {"at_calls": at, "ours_mb_per_call": per["ours"], "bare_mb_per_call": per["bare"],
            "ratio": _ratio(per["ours"], per["bare"]), "target_ratio": 0.5}


def _bursts(side: Side) -> dict[str, Any]:
    bursts = [s.burst for s in side.steps if s.burst]
    lags = [x for b in bursts for x in b["loop_lag_ms"]]
    heard = [x for b in bursts for x in b["live_heard_lates_ms"]]
    waits = [x for b in bursts for x in b["greeting_ms"]]
    return {"bursts": len(bursts), "at_calls": [b["live_calls"] for b in bursts],
            "new_calls": sum(b["new_calls"] for b in bursts), "loop_lag_p99_ms": percentile(lags, 99),
            "loop_lag_max_ms": max(lags, default=NAN), "live_heard_p99_ms": percentile(heard, 99),
            "live_underruns": sum(b["live_underruns"] for b in bursts),
            "greeting_wait_p50_ms": percentile(waits, 50), "greeting_wait_max_ms": max(waits, default=NAN),
            "refused": sum(b["refused"] + b["no_greeting"] for b in bursts)}


def _troubles(side: Side) -> dict[str, Any]:
    """Refused calls, status callbacks not accepted and error lines in the logs, over every level."""
    counts: dict[str, int] = {}
    for s in side.steps:
        for name, n in s.server_log.get("counts", {}).items():
            counts[name] = counts.get(name, 0) + n
    examples = [e for s in side.steps for e in s.server_log.get("examples", [])][:5]
    churn = [s.churn for s in side.steps if s.churn]
    return {"refused": sum(s.refused for s in side.steps), "status_errors": sum(s.status_errors for s in side.steps),
            "churned": sum(c["ended"] for c in churn), "churn_no_greeting": sum(c["no_greeting"] for c in churn),
            "log_counts": counts, "log_examples": examples,
            "refusal_examples": [r for s in side.steps for r in s.refusals][:3]}


def headline(costs: FrameCosts, deserialize_us: dict[str, float], setup: SetupResult, sides: dict[str, Side],
             multi: dict[str, Any] | None) -> dict[str, Any]:
    ours, bare = sides["ours"], sides["bare"]
    common = common_passed(sides)
    cpu = {m: _pooled_cpu(_at(side, common)) for m, side in sides.items()}
    frames = _pooled_frames(_at(ours, common))
    processors_us = processors_us_per_call_second(costs, frames)
    audio_in = frames.get("UsageMeter:InputAudioRawFrame", 0.0)
    serializer_us = audio_in * (deserialize_us["ours"] - deserialize_us["pipecat"])
    first = {m: side.steps[0] for m, side in sides.items() if side.steps}
    light = {m: s.turn_latency_ms for m, s in first.items()}
    pooled = {m: [x for s in _at(side, common) for x in s.turn_latency_ms] for m, side in sides.items()}
    med = {m: _median(v) for m, v in light.items()}
    cap = {m: side.search.capacity for m, side in sides.items()}
    su = setup.summary()
    out: dict[str, Any] = {
        "capacity": {"ours": ours.search.summary(), "bare": bare.search.summary(),
                     "ratio": _ratio(cap["ours"], cap["bare"]), "target_ratio": 1.0},
        "cpu": {"compared_at_calls": common, "ours_ms_per_call_s": cpu["ours"], "bare_ms_per_call_s": cpu["bare"],
                "ours_over_bare_pct": 100 * (cpu["ours"] - cpu["bare"]) / cpu["bare"] if cpu["bare"] else NAN,
                "frames_per_call_s_through_meter": sum(v for k, v in frames.items() if k.startswith("UsageMeter:")),
                "processors_us_per_call_s": processors_us,
                "processors_share_pct": 100 * processors_us / (1000 * cpu["ours"]) if cpu["ours"] else NAN,
                "serializer_extra_us_per_call_s": serializer_us, "target_share_pct": 3.0},
        "turn_latency": {
            "light_calls": first["ours"].level if "ours" in first else 0,
            "ours_median_ms": med.get("ours", NAN), "bare_median_ms": med.get("bare", NAN),
            "added_median_ms": med.get("ours", NAN) - med.get("bare", NAN),
            "ours_turns": len(light.get("ours", [])), "bare_turns": len(light.get("bare", [])),
            "ours_iqr_ms": [percentile(light.get("ours", []), q) for q in (25, 75)],
            "bare_iqr_ms": [percentile(light.get("bare", []), q) for q in (25, 75)],
            "pooled_ours_median_ms": _median(pooled["ours"]), "pooled_bare_median_ms": _median(pooled["bare"]),
            "pooled_turns": [len(pooled["ours"]), len(pooled["bare"])], "target_added_ms": 5.0,
        },
        "memory": _memory(sides),
        "burst": {"ours": _bursts(ours), "bare": _bursts(bare), "target_loop_lag_p99_ms": 5.0},
        "setup": {**su, "target_p95_ms": 50.0, "target_memories_p50_ms": 5.0,
                  "ours_start_to_greeting_p50_ms": percentile(first["ours"].greeting_ms if "ours" in first else [], 50),
                  "bare_start_to_greeting_p50_ms": percentile(first["bare"].greeting_ms if "bare" in first else [], 50),
                  "ours_webhook_p50_ms": percentile([1000 * x for x in ours.session.webhook_s], 50)},
        "troubles": {"ours": _troubles(ours), "bare": _troubles(bare)},
    }
    if multi:
        side = multi["side"]
        out["per_machine"] = {"processes": multi["processes"], "database": multi["database"],
                              "search": side.search.summary(), "bare_single_process": cap["bare"],
                              "ratio": _ratio(side.search.capacity, cap["bare"]), "target_ratio": 1.6,
                              "troubles": _troubles(side)}
    return out
