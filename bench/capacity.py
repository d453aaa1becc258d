"""Capacity found from below, bare and ours taking turns at each load level.

Machines of this kind differ by more than 2x in speed, so no fixed list of
levels fits them all. Each side starts at a load that passes (`start`), grows
(`growth`, e.g. doubling) while it passes, then bisects between its last pass
and its first failure until the gap is within `resolution` of the last pass
(smaller steps near the limit), or `max_levels` have run. A first level that
fails is halved until one passes, so every machine reports a number for each
side (0 only if one call fails).

Bare and ours run in lockstep, one level each per round, alternating which goes
first (bare, ours; ours, bare; ...), each alone on the machine: drift in what
else the machine does hits both alike. While both pass, their levels are the same
ones, which gives like-for-like CPU, turn latency and memory figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.load import LevelPlan, Step, run_level
from bench.session import Session


@dataclass
class Search:
    start: int
    growth: float
    resolution: float  # stop bisecting once first_fail - last_pass <= max(1, resolution * last_pass)
    max_levels: int
    max_calls: int = 200
    last_pass: int = 0
    first_fail: int | None = None
    levels: int = 0
    next: int = 0
    done: bool = False

    def __post_init__(self) -> None:
        self.next = self.start

    def record(self, n: int, passed: bool) -> None:
        self.levels += 1
        if passed:
            self.last_pass = max(self.last_pass, n)
        else:
            self.first_fail = n if self.first_fail is None else min(self.first_fail, n)
        if self.first_fail is None:
            grown = max(n + 1, math.ceil(n * self.growth))
            self.done = n >= self.max_calls
            self.next = min(grown, self.max_calls)
        elif self.last_pass == 0:
            self.done = n <= 1
            self.next = max(1, n // 2)
        else:
            gap = self.first_fail - self.last_pass
            self.done = gap <= max(1.0, self.resolution * self.last_pass)
            self.next = (self.last_pass + self.first_fail) // 2
        self.done = self.done or self.levels >= self.max_levels

    @property
    def capacity(self) -> int:
        return self.last_pass

    def describe(self) -> str:
        """`12` when bounded by a failure at 13; `>= 16` when no level failed."""
        if self.first_fail is None:
            return f">= {self.last_pass}"
        return f"{self.last_pass} (fails at {self.first_fail})"

    def summary(self) -> dict[str, Any]:
        return {"capacity": self.last_pass, "first_fail": self.first_fail, "levels": self.levels,
                "bounded": self.first_fail is not None, "described": self.describe()}


@dataclass
class Side:
    """One kind of server under search: its callers, its search, its levels and its RSS high-water mark."""

    session: Session
    search: Search
    rss_idle: dict[int, int]
    plan: LevelPlan
    steps: list[Step] = field(default_factory=list)
    largest: int = 0

    async def run_next(self, own_pids: list[int], caller_loop: list[tuple[float, float]], log: Any,
                       window: float | None = None, burst: bool = False) -> Step:
        n = self.search.next
        plan = LevelPlan(window=window or self.plan.window, spacing=self.plan.spacing,
                         churn_fraction=self.plan.churn_fraction, burst=self.plan.burst if burst else 0)
        step = await run_level(self.session, n, plan, own_pids=own_pids, rss_idle=self.rss_idle,
                               caller_loop=caller_loop, log=log)
        step.rss_fresh = n >= self.largest
        self.largest = max(self.largest, n)
        self.steps.append(step)
        self.search.record(n, step.passed)
        log(step.line())
        return step


async def search_alternating(sides: dict[str, Side], *, own_pids: list[int], caller_loop: list[tuple[float, float]],
                             first_window: float, burst_levels: int, log: Any = print) -> list[Step]:
    """Rounds of one level per side, alternating which goes first, until every search is done.

    The first level has a longer window (`first_window`: turn latency and CPU at light load),
    and the first `burst_levels` levels have a burst of new calls. Returns the levels in the
    order they ran.
    """
    ran: list[Step] = []
    round_ = 0
    while not all(side.search.done for side in sides.values()):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for mode in order:
            side = sides[mode]
            if not side.search.done:
                ran.append(await side.run_next(own_pids, caller_loop, log,
                                               window=first_window if round_ == 0 else None,
                                               burst=round_ < burst_levels))
        round_ += 1
    return ran


async def search_alone(side: Side, *, own_pids: list[int], caller_loop: list[tuple[float, float]],
                       log: Any = print) -> None:
    """One side's search on its own (the multi-process run, against bare's figure from the main run)."""
    while not side.search.done:
        await side.run_next(own_pids, caller_loop, log)
