"""What the overview shows: each queue's counts and last hour (``queue_stats``), the workers alive, and the
duration percentiles per function; plus the geometry of the small inline SVG charts."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from ..durations import durations
from ..queue_stats import Minute, QueueStats, queue_stats

#: minutes of history on the overview's charts
CHART_MINUTES = 60
CHART_WIDTH = 240
CHART_HEIGHT = 48


@dataclass(frozen=True, slots=True)
class Percentiles:
    function: str
    p50_s: float | None
    p95_s: float | None


async def duration_percentiles(redis: Redis, queue: str) -> list[Percentiles]:
    """Try duration p50/p95 per function of ``queue`` over the chart's hour (``durations.py``), by function."""
    found = await durations(redis, queue, minutes=CHART_MINUTES)
    return [Percentiles(function, d.p50_s, d.p95_s) for function, d in sorted(found.items())]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    #: y and height of the finished part, and of the failed-for-good part stacked on it
    ok_y: float
    ok_height: float
    dead_y: float
    dead_height: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    peak_per_min: int
    finished: int
    dead: int

    @property
    def failure_rate(self) -> float | None:
        return self.dead / self.finished if self.finished else None


def outcome_chart(minutes: list[Minute]) -> Chart:
    """Bars of final outcomes per minute (the part that failed for good stacked on top), scaled to the peak."""
    last = minutes[-CHART_MINUTES:]
    peak = max((m.finished for m in last), default=0)
    slot = CHART_WIDTH / max(len(last), 1)
    bars = []
    for i, m in enumerate(last):
        ok = m.finished - m.dead
        ok_h = CHART_HEIGHT * ok / peak if peak else 0.0
        dead_h = CHART_HEIGHT * m.dead / peak if peak else 0.0
        minute = f"{m.start_ms // 3_600_000 % 24:02d}:{m.start_ms // 60_000 % 60:02d} UTC"
        bars.append(Bar(
            round(i * slot, 2), round(max(slot - 1, 1), 2), round(CHART_HEIGHT - ok_h, 2), round(ok_h, 2),
            round(CHART_HEIGHT - ok_h - dead_h, 2), round(dead_h, 2),
            f"{minute}: {m.finished} finished, {m.dead} failed for good, {m.retried} retried",
        ))  # fmt: skip
    return Chart(bars, peak, sum(m.finished for m in last), sum(m.dead for m in last))


@dataclass(frozen=True, slots=True)
class QueueView:
    stats: QueueStats
    chart: Chart
    percentiles: list[Percentiles] = field(default_factory=list)


async def read_overview(redis: Redis, queues: list[str]) -> list[QueueView]:
    views = []
    for queue in queues:
        stats = await queue_stats(redis, queue, minutes=CHART_MINUTES)
        views.append(QueueView(stats, outcome_chart(stats.minutes), await duration_percentiles(redis, queue)))
    return views
