"""What one interval of a load step measured: the servers' probes, /proc, the callers, the server logs.

Every figure is read for an interval [t0, t1) so the same code serves the
steady window, a burst of new calls and a churn phase. Lateness is taken at
both ends of the line: the server's `LatenessProbe` (inbound frames as the app
takes them, outbound as it sends them) and the callers' playback (`heard`: how
long a caller's audio ran dry inside persona speech). Pipecat's WebSocket output
sends audio at twice real time, so a caller holds up to half a reply queued: the
heard figure only moves when the server falls behind early in a reply, or by more
than the queue holds, which is what a caller would hear. The servers' event-loop
lag, and this process's own (the callers' loop: when it lags, lateness may be
the bench's, not the server's), are read beside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.procs import cpu_seconds, machine_busy_seconds
from bench.session import Server
from bench.stats import percentile

UNDERRUN_S = 0.020  # a gap of a whole 20 ms frame or more inside speech: a click or a stutter the caller hears
# Server log lines that mean a call or a write went wrong (loguru's level column, and the known failures).
LOG_PATTERNS = {"error": re.compile(r"\| (ERROR|CRITICAL) "), "traceback": re.compile(r"^Traceback"),
                "database is locked": re.compile(r"database is locked"),
                "could not start": re.compile(r"could not start", re.IGNORECASE),
                "memory not loaded": re.compile(r"memory for \S+ not loaded"),  # the call began on the core prompt
                "task exception not retrieved": re.compile(r"Task exception was never retrieved"),
                "connection pool exhausted": re.compile(r"QueuePool limit")}


def ms(values: list[float], pct: float) -> float:
    return 1000 * percentile(values, pct)


def heard_stats(samples: list[tuple[float, float]]) -> dict[str, float]:
    """p99 and max of how long playback ran dry per speech chunk, and audible underruns per minute of speech."""
    lates = [late for late, _ in samples]
    speech_min = sum(dur for _, dur in samples) / 60
    underruns = sum(1 for late in lates if late >= UNDERRUN_S)
    return {"heard_p99_ms": ms(lates, 99), "heard_max_ms": 1000 * max(lates, default=float("nan")),
            "underruns": underruns, "speech_min": speech_min,
            "underruns_per_min": underruns / speech_min if speech_min else float("nan")}


async def probe(client: httpx.AsyncClient, servers: list[Server], since: float) -> dict[str, Any]:
    """The servers' probe samples since `since`, pooled (the probe drops older ones: read forward only)."""
    pooled: dict[str, Any] = {"inbound": [], "outbound": [], "loop_lag": [], "counters": {}}
    for server in servers:
        data = (await client.get(f"{server.http_url}/_bench/probe", params={"since": since})).json()
        for key in ("inbound", "outbound", "loop_lag"):
            pooled[key] += data[key]
        for key, value in data["counters"].items():
            pooled["counters"][key] = pooled["counters"].get(key, 0) + value
    return pooled


@dataclass
class CpuMark:
    """CPU seconds of the servers and of the bench's own processes, and the machine's busy time."""

    at: float
    servers: float
    own: float
    busy: float

    @classmethod
    def take(cls, at: float, servers: list[Server], own_pids: list[int]) -> "CpuMark":
        return cls(at, sum(cpu_seconds(s.pid) for s in servers), sum(cpu_seconds(p) for p in own_pids),
                   machine_busy_seconds())

    def other_load_pct(self, later: "CpuMark") -> float:
        """Share of a core used by anything but the servers and the bench (fakes, callers)."""
        own = (later.servers - self.servers) + (later.own - self.own)
        return max(0.0, 100 * ((later.busy - self.busy) - own) / (later.at - self.at))


@dataclass
class LogScan:
    """New lines in the servers' logs since the last scan, counted by pattern, with a few examples."""

    paths: list[Path]
    offsets: dict[Path, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offsets = {p: p.stat().st_size if p.exists() else 0 for p in self.paths}

    def scan(self) -> dict[str, Any]:
        counts = {name: 0 for name in LOG_PATTERNS}
        examples: list[str] = []
        for path in self.paths:
            with path.open("rb") as f:
                f.seek(self.offsets[path])
                text = f.read().decode("utf-8", "replace")
                self.offsets[path] = f.tell()
            for line in text.splitlines():
                hits = [name for name, rx in LOG_PATTERNS.items() if rx.search(line)]
                for name in hits:
                    counts[name] += 1
                if hits and len(examples) < 3:
                    examples.append(line[:240])
        return {"counts": counts, "examples": examples}
