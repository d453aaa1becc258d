"""Turn the measurements into the headline figures, a printed table and a JSON document.

Comparisons are made like for like: turn latency, call set-up and CPU come
from the light-load runs taken from bare and ours in turns; CPU adds the load
steps both servers passed (the same numbers of calls in both); memory is read
at the largest such step.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from bench.load import LightLoad, Step
from bench.micro import KINDS, FrameCosts, processors_us_per_call_second
from bench.setup_time import SetupResult
from bench.stats import percentile

BUSY_MACHINE_PCT = 15.0  # other processes using more than this share of a core disturb a step


def machine_info() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "pipecat": importlib.metadata.version("pipecat-ai"),
            "os": f"{platform.system()} {platform.release()}"}


def _common_passed(ours: list[Step], bare: list[Step], min_calls: int = 1) -> list[int]:
    passed = {s.calls for s in bare if s.passed}
    return sorted(s.calls for s in ours if s.passed and s.calls in passed and s.calls >= min_calls)


def _pooled_cpu(steps: list[Step], counts: list[int]) -> float:
    chosen = [s for s in steps if s.calls in counts]
    return 1000 * sum(s.cpu_s for s in chosen) / sum(s.call_s for s in chosen) if chosen else float("nan")


def _pooled_frames(steps: list[Step], counts: list[int]) -> dict[str, float]:
    chosen = [s for s in steps if s.calls in counts]
    total = sum(s.call_s for s in chosen)
    keys = {k for s in chosen for k in s.frames_per_call_s}
    return {k: sum(s.frames_per_call_s.get(k, 0.0) * s.call_s for s in chosen) / total for k in sorted(keys)}


def _rss_slope(steps: list[Step]) -> float:
    """MB per added call: the least-squares slope of RSS over live calls (steps of 4+ calls).

    Less noisy than one step's delta over the idle baseline: the first calls also pay for
    allocator arenas and caches that later calls reuse.
    """
    points = [(s.calls, s.rss_mb) for s in steps if s.calls >= 4]
    if len(points) < 2:
        return float("nan")
    mean_n = sum(n for n, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    spread = sum((n - mean_n) ** 2 for n, _ in points)
    return sum((n - mean_n) * (m - mean_m) for n, m in points) / spread if spread else float("nan")


def _capacity(steps: list[Step]) -> int:
    passed = [s.calls for s in steps if s.passed]
    return max(passed) if passed else 0


def headline(costs: FrameCosts, deserialize_us: dict[str, float], setup: SetupResult,
             steps: dict[str, list[Step]], light: LightLoad) -> dict[str, Any]:
    ours, bare = steps["ours"], steps["bare"]
    common = _common_passed(ours, bare)
    cpu_steps = {m: light.steps[m] + [s for s in steps[m] if s.calls in common] for m in steps}
    every = list(range(1, 1000))
    ours_cpu, bare_cpu = _pooled_cpu(cpu_steps["ours"], every), _pooled_cpu(cpu_steps["bare"], every)
    frames = _pooled_frames(cpu_steps["ours"], every)
    processors_us = processors_us_per_call_second(costs, frames)
    audio_in = frames.get("UsageMeter:InputAudioRawFrame", 0.0)
    serializer_us = audio_in * (deserialize_us["ours"] - deserialize_us["pipecat"])
    ours_lat = [x for s in light.steps["ours"] for x in s.turn_latency_ms]
    bare_lat = [x for s in light.steps["bare"] for x in s.turn_latency_ms]
    ours_med = statistics.median(ours_lat) if ours_lat else float("nan")
    bare_med = statistics.median(bare_lat) if bare_lat else float("nan")
    mem_at = max(common, default=0)
    mem = {m: next((s.rss_mb_per_call for s in steps[m] if s.calls == mem_at), float("nan")) for m in steps}
    cap_ours, cap_bare = _capacity(ours), _capacity(bare)
    greeting = {m: [1000 * x for x in light.greeting_s[m]] for m in light.greeting_s}
    return {
        "cpu": {
            "compared_at_calls": sorted({s.calls for s in cpu_steps["ours"]}),
            "ours_ms_per_call_s": ours_cpu, "bare_ms_per_call_s": bare_cpu,
            "ours_over_bare_pct": 100 * (ours_cpu - bare_cpu) / bare_cpu,
            "frames_per_call_s_through_processors": sum(v for k, v in frames.items() if k.startswith("UsageMeter:")),
            "processors_us_per_call_s": processors_us,
            "processors_share_pct": 100 * processors_us / (1000 * ours_cpu),
            "serializer_extra_us_per_call_s": serializer_us,
        },
        "capacity": {"ours_calls": cap_ours, "bare_calls": cap_bare,
                     "ratio": cap_ours / cap_bare if cap_bare else float("nan")},
        "turn_latency": {
            "light_load_calls": light.steps["ours"][0].calls if light.steps["ours"] else 0,
            "ours_median_ms": ours_med, "bare_median_ms": bare_med, "added_median_ms": ours_med - bare_med,
            "ours_turns": len(ours_lat), "bare_turns": len(bare_lat),
            "ours_iqr_ms": [percentile(ours_lat, 25), percentile(ours_lat, 75)],
            "bare_iqr_ms": [percentile(bare_lat, 25), percentile(bare_lat, 75)],
            # Our per-frame work that could sit on a turn's path, if all of it fell inside the turn:
            "per_frame_work_bound_ms": (processors_us + serializer_us) * ours_med / 1e6,
        },
        "memory": {"at_calls": mem_at, "ours_mb_per_call": mem["ours"], "bare_mb_per_call": mem["bare"],
                   "added_mb_per_call": mem["ours"] - mem["bare"],
                   "ours_mb_per_added_call": _rss_slope(ours), "bare_mb_per_added_call": _rss_slope(bare)},
        "setup": {
            **setup.summary(),
            "ours_start_to_greeting_p50_ms": percentile(greeting["ours"], 50),
            "bare_start_to_greeting_p50_ms": percentile(greeting["bare"], 50),
            "ours_webhook_p50_ms": percentile([1000 * x for x in light.webhook_s], 50),
        },
    }


def _verdict(step: Step) -> str:
    verdict = "pass" if step.passed else f"FAIL: {step.why}"
    return verdict + (f" (2nd window; 1st: {step.first_try})" if step.first_try else "")


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def render(machine: dict[str, Any], head: dict[str, Any], costs: FrameCosts, deserialize_us: dict[str, float],
           steps: dict[str, list[Step]], light: LightLoad, quick: bool, seconds: float) -> str:
    cpu, cap, lat, mem, su = head["cpu"], head["capacity"], head["turn_latency"], head["memory"], head["setup"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, {machine['os']}, "
        f"Python {machine['python']}, Pipecat {machine['pipecat']}" + ("  [--quick]" if quick else ""),
        f"Run: {seconds:.0f} s. Baseline: bare Pipecat with the same services, fakes and settings, same run.",
        "",
        "| Measure | Ours | Bare Pipecat | Ours vs bare | Target |",
        "|---|---|---|---|---|",
        f"| CPU per call-second (at {', '.join(map(str, cpu['compared_at_calls']))} calls, pooled) | "
        f"{_f(cpu['ours_ms_per_call_s'])} ms | {_f(cpu['bare_ms_per_call_s'])} ms | "
        f"{cpu['ours_over_bare_pct']:+.1f}% | |",
        f"| UsageMeter + BudgetGuard, per frame | {_f(costs.added_by_ours('input audio (system)'))} µs (audio in), "
        f"{_f(costs.added_by_ours('usage metrics'))} µs (usage metrics) | 0 (not in the pipeline) | "
        f"{_f(costs.beyond_passthrough('input audio (system)'))} µs beyond 2 passthrough hops | |",
        f"| Processors' share of a call's CPU | {_f(cpu['processors_share_pct'], 2)}% "
        f"({_f(cpu['frames_per_call_s_through_processors'], 0)} frames/call-s × per-frame cost) | — | — | ≤ 3% |",
        f"| Twilio deserialize, per inbound frame | {_f(deserialize_us['ours'])} µs | "
        f"{_f(deserialize_us['pipecat'])} µs | {deserialize_us['ours'] - deserialize_us['pipecat']:+.1f} µs | |",
        f"| Concurrent real-time calls (p99 lateness < 40 ms) | {cap['ours_calls']} | {cap['bare_calls']} | "
        f"{_f(cap['ratio'], 2)}× | ≥ 0.95× |",
        f"| Turn latency, median ({lat['light_load_calls']} calls, in turns; n = {lat['ours_turns']} / "
        f"{lat['bare_turns']}) | {_f(lat['ours_median_ms'], 0)} ms | {_f(lat['bare_median_ms'], 0)} ms | "
        f"{lat['added_median_ms']:+.0f} ms (per-frame work bound {_f(lat['per_frame_work_bound_ms'], 2)} ms) | "
        f"≤ +5 ms |",
        f"| Memory per live call (RSS, at {mem['at_calls']} calls) | {_f(mem['ours_mb_per_call'])} MB | "
        f"{_f(mem['bare_mb_per_call'])} MB | {mem['added_mb_per_call']:+.1f} MB | ≤ +5 MB |",
        f"| Memory per added call (RSS slope over the steps) | {_f(mem['ours_mb_per_added_call'])} MB | "
        f"{_f(mem['bare_mb_per_added_call'])} MB | "
        f"{mem['ours_mb_per_added_call'] - mem['bare_mb_per_added_call']:+.1f} MB | |",
        f"| Call set-up, open + begin ({su['facts']} facts, {su['recent_calls']} recent calls, SQLite) | "
        f"p50 {_f(su['setup_p50_ms'])} ms, p95 {_f(su['setup_p95_ms'])} ms | — | — | p95 ≤ 50 ms |",
        f"| Call start → greeting heard, p50 (light load) | {_f(su['ours_start_to_greeting_p50_ms'], 0)} ms (webhook "
        f"{_f(su['ours_webhook_p50_ms'], 0)} ms) | {_f(su['bare_start_to_greeting_p50_ms'], 0)} ms | "
        f"{su['ours_start_to_greeting_p50_ms'] - su['bare_start_to_greeting_p50_ms']:+.0f} ms | |",
        f"| Memories read, {su['facts']} facts, p50 | {_f(su['memories_p50_ms'], 2)} ms | — | — | ≤ 5 ms |",
        "",
        f"Memories read measured as: {su['memories_measured']}; domain snapshot p50 {_f(su['snapshot_p50_ms'], 2)} ms.",
        f"Composite prompt: {su['prompt_tokens']} tokens; trimmed {su['prompt_trimmed']}.",
        "",
        "Per-frame CPU (µs, best of the repeats) through a PipelineWorker configured as run_call configures it:",
        "| Frame kind | none | 2 passthrough | UsageMeter + BudgetGuard | added by ours |",
        "|---|---|---|---|---|",
    ]
    for kind in KINDS:
        us = costs.us[kind]
        lines.append(f"| {kind} | {_f(us['none'])} | {_f(us['passthrough'])} | {_f(us['ours'])} | "
                     f"{_f(costs.added_by_ours(kind))} |")
    lines += ["", "Runs: light load (bare and ours in turns), then load steps (live calls kept talking; "
              "each step measured after the new calls settled):",
              "| Server | Calls | CPU % of a core | CPU ms/call-s | RSS MB/call | late p99 in / out ms | "
              "loop lag p99 ms | caller send p99 ms | turns, median ms | other load % | result |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(f"{m} (light)", s) for m in light.steps for s in light.steps[m]]
    rows += [(m, s) for m in steps for s in steps[m]]
    for mode, s in rows:
        med = statistics.median(s.turn_latency_ms) if s.turn_latency_ms else float("nan")
        disturbed = " (machine busy)" if s.other_load_pct > BUSY_MACHINE_PCT else ""
        lines.append(
            f"| {mode} | {s.calls} | {_f(s.cpu_pct_of_core)} | {_f(s.cpu_ms_per_call_s)} | "
            f"{_f(s.rss_mb_per_call)} | {_f(s.inbound_p99_ms)} / {_f(s.outbound_p99_ms)} | "
            f"{_f(s.loop_lag_p99_ms)} | {_f(s.caller_send_p99_ms)} | {len(s.turn_latency_ms)}, {_f(med, 0)} | "
            f"{_f(s.other_load_pct, 0)}{disturbed} | {_verdict(s)} |")
    busy = [s for _, s in rows if s.other_load_pct > BUSY_MACHINE_PCT]
    if busy:
        lines += ["", f"WARNING: other processes used more than {BUSY_MACHINE_PCT:.0f}% of a core during "
                      f"{len(busy)} of {len(rows)} measured runs; the figures from those runs are disturbed. "
                      "Rerun on a quiet machine."]
    return "\n".join(lines)
