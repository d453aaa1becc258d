"""The printed table: each target's figure beside bare Pipecat's from the same run and the target itself.

Then the per-frame costs, every load level (both sides, in the order they ran),
every burst, and the per-machine run's levels. Warnings say when other work on
the machine disturbed a level, and when a server logged errors.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from bench.load import Step
from bench.micro import KINDS, FrameCosts

BUSY_MACHINE_PCT = 15.0  # other processes using more than this share of a core disturb a level


def machine_info() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "pipecat": importlib.metadata.version("pipecat-ai"),
            "os": f"{platform.system()} {platform.release()}"}


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:,.{digits}f}"


def _verdict(step: Step) -> str:
    verdict = "pass" if step.passed else f"FAIL: {step.why}"
    return verdict + (f" (2nd window; 1st: {step.first_try})" if step.first_try else "")


def _targets(h: dict[str, Any], costs: FrameCosts, quick: bool) -> list[str]:
    cap, cpu, lat, mem, su, burst = h["capacity"], h["cpu"], h["turn_latency"], h["memory"], h["setup"], h["burst"]
    bo, bb = burst["ours"], burst["bare"]
    coarse = " (--quick: 3 levels, coarse)" if quick else ""
    rows = [
        "| Measure | Ours | Bare Pipecat | Ours vs bare | Target |", "|---|---|---|---|---|",
        f"| Concurrent real-time calls, one process (found from below) | {cap['ours']['described']} | "
        f"{cap['bare']['described']} | {_f(cap['ratio'], 2)}×{coarse} | ≥ 1.0× |",
    ]
    pm = h.get("per_machine")
    if pm:
        rows.append(f"| Concurrent calls, one machine ({pm['processes']} processes of ours, one database) | "
                    f"{pm['search']['described']} | {pm['bare_single_process']} (one process) | "
                    f"{_f(pm['ratio'], 2)}×{coarse} | ≥ 1.6× |")
    rows += [
        f"| Event-loop lag p99 while new calls start ({bo['bursts']} burst(s) of new calls at once, at "
        f"{', '.join(map(str, bo['at_calls']))} live) | {_f(bo['loop_lag_p99_ms'])} ms "
        f"(max {_f(bo['loop_lag_max_ms'])}) | {_f(bb['loop_lag_p99_ms'])} ms (max {_f(bb['loop_lag_max_ms'])}) | "
        f"{_f(_ratio(bo['loop_lag_p99_ms'], bb['loop_lag_p99_ms']), 2)}× | ≤ 5 ms |",
        f"| Live calls' heard lateness p99 during those bursts | {_f(bo['live_heard_p99_ms'])} ms "
        f"({bo['live_underruns']} underruns) | {_f(bb['live_heard_p99_ms'])} ms "
        f"({bb['live_underruns']} underruns) | | |",
        f"| New call's wait for its greeting in a burst, p50 / max | {_f(bo['greeting_wait_p50_ms'], 0)} / "
        f"{_f(bo['greeting_wait_max_ms'], 0)} ms | {_f(bb['greeting_wait_p50_ms'], 0)} / "
        f"{_f(bb['greeting_wait_max_ms'], 0)} ms | {_f(bo['greeting_wait_p50_ms'] - bb['greeting_wait_p50_ms'], 0)} "
        f"ms (p50) | |",
        f"| Memory per live call (RSS over idle, after every call's first turn, at {mem['at_calls']} calls) | "
        f"{_f(mem['ours_mb_per_call'])} MB | {_f(mem['bare_mb_per_call'])} MB | {_f(mem['ratio'], 2)}× | ≤ 0.5× |",
        f"| Turn latency, median (caller's last audio → first persona audio; {lat['light_calls']} calls; n = "
        f"{lat['ours_turns']} / {lat['bare_turns']}) | {_f(lat['ours_median_ms'], 0)} ms | "
        f"{_f(lat['bare_median_ms'], 0)} ms | {lat['added_median_ms']:+.0f} ms | ≤ bare + 5 ms |",
        f"| Turn latency, median, pooled over {', '.join(map(str, cpu['compared_at_calls']))} calls (n = "
        f"{lat['pooled_turns'][0]} / {lat['pooled_turns'][1]}) | {_f(lat['pooled_ours_median_ms'], 0)} ms | "
        f"{_f(lat['pooled_bare_median_ms'], 0)} ms | "
        f"{lat['pooled_ours_median_ms'] - lat['pooled_bare_median_ms']:+.0f} ms | |",
        f"| Call set-up, open + begin ({su['facts']} facts, {su['recent_calls']} recent calls, SQLite), p95 | "
        f"{_f(su['setup_p95_ms'])} ms = {_f(su['setup_p95_in_writes'], 0)} write round trips | "
        f"write round trip {_f(su['sqlite_write_p50_ms'], 2)} ms | | ≤ 50 ms |",
        f"| `GET /memories`, {su['facts']} facts, p50 | {_f(su['memories_p50_ms'], 2)} ms = "
        f"{_f(su['memories_p50_in_reads'], 0)} read round trips | read round trip {_f(su['sqlite_read_p50_ms'], 2)} ms"
        f" | | ≤ 5 ms |",
        f"| Our processors' share of a call's CPU | {_f(cpu['processors_share_pct'], 2)}% "
        f"({_f(cpu['processors_us_per_call_s'], 0)} µs per call-second) | — | — | ≤ 3% |",
        f"| CPU per call-second (pooled over {', '.join(map(str, cpu['compared_at_calls']))} calls) | "
        f"{_f(cpu['ours_ms_per_call_s'])} ms | {_f(cpu['bare_ms_per_call_s'])} ms | "
        f"{_f(_ratio(cpu['ours_ms_per_call_s'], cpu['bare_ms_per_call_s']), 2)}× "
        f"({_f(cpu['ours_over_bare_pct'])}%) | |",
        f"| Call start → greeting heard, p50 ({lat['light_calls']} calls, webhook included) | "
        f"{_f(su['ours_start_to_greeting_p50_ms'], 0)} ms (webhook {_f(su['ours_webhook_p50_ms'], 0)} ms) | "
        f"{_f(su['bare_start_to_greeting_p50_ms'], 0)} ms | "
        f"{su['ours_start_to_greeting_p50_ms'] - su['bare_start_to_greeting_p50_ms']:+.0f} ms | |",
        f"| UsageMeter + BudgetGuard, per frame | {_f(costs.added_by_ours('input audio (system)'))} µs (audio in) | "
        f"0 | {_f(costs.beyond_passthrough('input audio (system)'))} µs beyond 2 passthrough hops | |",
    ]
    return rows


def _ratio(a: float, b: float) -> float:
    return a / b if b and b == b else float("nan")


def _trouble_lines(h: dict[str, Any]) -> list[str]:
    lines = ["", "Churn and errors (whole run): refused calls, status callbacks not accepted, server log lines:"]
    groups = [("ours", h["troubles"]["ours"]), ("bare", h["troubles"]["bare"])]
    if h.get("per_machine"):
        groups.append((f"ours × {h['per_machine']['processes']}", h["per_machine"]["troubles"]))
    for name, t in groups:
        logs = ", ".join(f"{k}: {v}" for k, v in t["log_counts"].items())
        lines.append(f"- {name}: {t['churned']} calls ended and replaced mid-load, {t['refused']} refused, "
                     f"{t['churn_no_greeting']} replacements without a greeting, {t['status_errors']} status "
                     f"callbacks not accepted; log: {logs or 'none'}")
        lines += [f"    refused: {r}" for r in t["refusal_examples"]]
        lines += [f"    {e}" for e in t["log_examples"]]
    return lines


def _steps_table(title: str, rows: list[Step]) -> list[str]:
    lines = ["", title,
             "| Server | Calls | CPU % core | CPU ms/call-s | MB/call | late p99 in / out (server) ms | "
             "heard p99 / max ms | underruns/min | loop lag p99 ms | caller send / loop p99 ms | turns, median ms | "
             "churn: ended / refused / status errs | log lines flagged | bench / other load % | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        med = statistics.median(s.turn_latency_ms) if s.turn_latency_ms else float("nan")
        busy = " (busy)" if s.other_load_pct > BUSY_MACHINE_PCT else ""
        churn = f"{s.churn['ended']} / {s.churn['refused']} / {s.churn['status_errors']}" if s.churn else "—"
        errors = sum(s.server_log.get("counts", {}).values())
        live = str(s.level) if s.calls == s.level else f"{s.level} ({s.calls} live)"
        mb = _f(s.rss_mb_per_call) + ("" if s.rss_fresh else "*")
        lines.append(
            f"| {s.mode}{'' if s.servers == 1 else f' ×{s.servers}'} | {live} | {_f(s.cpu_pct_of_core)} | "
            f"{_f(s.cpu_ms_per_call_s)} | {mb} | {_f(s.inbound_p99_ms)} / {_f(s.outbound_p99_ms)} | "
            f"{_f(s.heard_p99_ms)} / {_f(s.heard_max_ms)} | {_f(s.underruns_per_min)} | {_f(s.loop_lag_p99_ms)} | "
            f"{_f(s.caller_send_p99_ms)} / {_f(s.caller_loop_p99_ms)} | {len(s.turn_latency_ms)}, {_f(med, 0)} | "
            f"{churn} | {errors} | {_f(s.bench_pct_of_core, 0)} / {_f(s.other_load_pct, 0)}{busy} | {_verdict(s)} |")
    return lines


def _bursts_table(rows: list[Step]) -> list[str]:
    lines = ["", "Bursts (new calls dialled at once while the level's calls talk):",
             "| Server | Live calls | New calls | greeting wait p50 / max ms | live heard p99 / max ms | "
             "live underruns | loop lag p99 / max ms | inbound p99 ms (all streams, new calls' first frames too) | "
             "refused or silent |", "|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        b = s.burst
        waits = b["greeting_ms"]
        lines.append(f"| {s.mode} | {b['live_calls']} | {b['new_calls']} | "
                     f"{_f(statistics.median(waits) if waits else None, 0)} / {_f(max(waits, default=None), 0)} | "
                     f"{_f(b['live_heard_p99_ms'])} / {_f(b['live_heard_max_ms'])} | {b['live_underruns']} | "
                     f"{_f(b['loop_lag_p99_ms'])} / {_f(b['loop_lag_max_ms'])} | {_f(b['inbound_p99_ms'])} | "
                     f"{b['refused'] + b['no_greeting']} |")
    return lines


def render(machine: dict[str, Any], h: dict[str, Any], costs: FrameCosts, deserialize_us: dict[str, float],
           order: list[Step], multi_steps: list[Step], quick: bool, seconds: float) -> str:
    su = h["setup"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, {machine['os']}, "
        f"Python {machine['python']}, Pipecat {machine['pipecat']}" + ("  [--quick]" if quick else ""),
        f"Run: {seconds:.0f} s. Baseline: bare Pipecat, one Cerebras LLM service (no switcher, no fallback), the "
        "same STT/TTS, fakes and settings, in the same run, taking turns with ours at each level.",
        "", *_targets(h, costs, quick), "",
        f"Capacity: p99 lateness of inbound frames (server) and of heard speech (callers) under 40 ms, no broken "
        f"or refused call. Per-machine database: {h['per_machine']['database'] if h.get('per_machine') else 'n/a'}.",
        f"Memories read measured as: {su['memories_measured']}; domain snapshot p50 {_f(su['snapshot_p50_ms'], 2)} ms. "
        f"Composite prompt: {su['prompt_tokens']} tokens; trimmed {su['prompt_trimmed']}.",
        f"Twilio deserialize per inbound frame: ours {_f(deserialize_us['ours'])} µs, Pipecat's "
        f"{_f(deserialize_us['pipecat'])} µs.",
        "", "Per-frame CPU (µs, best of the repeats) through a PipelineWorker configured as run_call configures it:",
        "| Frame kind | none | 2 passthrough | UsageMeter + BudgetGuard | added by ours |", "|---|---|---|---|---|",
    ]
    for kind in KINDS:
        us = costs.us[kind]
        lines.append(f"| {kind} | {_f(us['none'])} | {_f(us['passthrough'])} | {_f(us['ours'])} | "
                     f"{_f(costs.added_by_ours(kind))} |")
    lines += _steps_table("Load levels, in the order they ran (* MB/call: a larger level ran before on that "
                          "server, so RSS is a high-water mark):", order)
    lines += _bursts_table([s for s in order if s.burst])
    if multi_steps:
        lines += _steps_table("Per-machine run (processes of ours round-robin, one shared database):", multi_steps)
    lines += _trouble_lines(h)
    every = order + multi_steps
    busy = [s for s in every if s.other_load_pct > BUSY_MACHINE_PCT]
    if busy:
        lines += ["", f"WARNING: other processes used more than {BUSY_MACHINE_PCT:.0f}% of a core during "
                      f"{len(busy)} of {len(every)} levels; figures from those are disturbed. "
                      "Rerun on a quiet machine."]
    return "\n".join(lines)
