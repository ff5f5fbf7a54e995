"""The dashboard's templates (``gateway/ui/templates``) and the filters they format with.

Autoescaping is on for every template: message content, journal reasons and anything else
that came over the wire is text on the page, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from gateway.ops.console_api import Overview, Rate
from gateway.ui.charts import Series, line_chart


def duration(seconds: float | None) -> str:
    """``0.0123`` -> ``12 ms``, ``75`` -> ``1 min 15 s``; an em dash for no value."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def percent(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f} %"


def rate(per_s: float) -> str:
    return f"{per_s:.2f}/s"


def timestamp(at: datetime | None) -> str:
    """UTC, to the millisecond: the journal's times are compared across processes."""
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def fault_share(r: Rate) -> float | None:
    return r.faults_per_s / r.messages_per_s if r.messages_per_s else None


def charts(overview: Overview) -> tuple[Markup, Markup]:
    """The traffic and the answer-time chart over ``overview.history``."""
    history: Sequence[Rate] = overview.history
    traffic = line_chart(
        "Traffic",
        "/s",
        [
            Series("messages", [r.messages_per_s for r in history], "line-1"),
            Series("faults", [r.faults_per_s for r in history], "line-2"),
        ],
    )
    latency = line_chart(
        "Answer time",
        "s",
        [
            Series("p50", [r.latency_p50_s for r in history], "line-1"),
            Series("p95", [r.latency_p95_s for r in history], "line-2"),
        ],
    )
    return traffic, latency


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gateway.ui", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=duration, percent=percent, rate=rate, timestamp=timestamp, fault_share=fault_share
    )
    return env


class Templates:
    def __init__(self) -> None:
        self._env = environment()

    def render(self, name: str, **context: Any) -> str:
        return self._env.get_template(name).render(**context)
