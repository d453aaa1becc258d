"""Prometheus metrics, read at scrape time.

Counts and costs come from the database, not from in-process counters: with
several workers every scrape then sees the same totals (no counter lost when
a worker restarts), and nothing on the call path pays for metrics. Only the
calls this process holds are read from memory.

Series:
- callmeback_live_calls: live calls in the database (all workers)
- callmeback_process_live_calls: live calls held by this process
- callmeback_process_live_cost_usd: their running totals
- callmeback_calls_total{direction,status,outcome}: every call by how it ended
- callmeback_cost_usd_total{service}: all cost events by service (+ stripe_fee)
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.books.money import MICROS_PER_DOLLAR
from agent.calls.lifecycle import CallLifecycle
from storage.reports import Reports

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot:
    """A collector over figures gathered beforehand (collectors are synchronous; our database is not)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def _dollars(micros: int) -> float:
    return float(Decimal(micros) / MICROS_PER_DOLLAR)


async def render_metrics(lifecycle: CallLifecycle) -> bytes:
    reports = Reports(lifecycle.rt.db)
    live_db = GaugeMetricFamily("callmeback_live_calls", "Live calls in the database (all workers)")
    live_db.add_metric([], await reports.live_call_count())
    sessions = list(lifecycle.live.values())
    live_here = GaugeMetricFamily("callmeback_process_live_calls", "Live calls held by this process")
    live_here.add_metric([], len(sessions))
    live_cost = GaugeMetricFamily("callmeback_process_live_cost_usd", "Running cost of this process's live calls")
    live_cost.add_metric([], _dollars(sum(s.tracker.running_total_micros() for s in sessions)))
    calls = CounterMetricFamily("callmeback_calls", "Calls by direction, status and outcome (end reason)",
                                labels=["direction", "status", "outcome"])
    for row in await reports.call_outcomes():
        calls.add_metric([row["direction"], row["status"], row["end_reason"] or ""], row["count"])
    cost = CounterMetricFamily("callmeback_cost_usd", "Cost of all calls by service, in US dollars",
                               labels=["service"])
    for service, micros in sorted((await reports.cost_by_service()).items()):
        cost.add_metric([service], _dollars(micros))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot([live_db, live_here, live_cost, calls, cost]))
    return generate_latest(registry)
