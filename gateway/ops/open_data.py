"""The KPIs as open data: CSV and JSON files, one set per period.

For each period (a day or a month, labelled ``2026-03-02`` or ``2026-03``)
:func:`write_open_data` writes

* ``kpi-agencies-<period>.csv``: one row per agency and message type, and one per
  agency with an empty ``message_type`` (its total), columns :data:`AGENCY_COLUMNS`;
* ``kpi-services-<period>.csv``: one row per service, columns :data:`SERVICE_COLUMNS`;
* ``kpi-<period>.json``: both tables, the column descriptions and the period.

CSV is UTF-8 with a header row, comma-separated; an empty cell is "no value"
(no settled request, nothing answered), ``null`` in JSON. Ratios are rounded to 4
decimals, seconds to 3; times are UTC ISO 8601. Each file is written beside its
final name and renamed, so a publishing web server never serves half a file.
``docs/operations.md`` lists the columns for readers; a test keeps it in step.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from gateway.ops.kpi import AVAILABILITY_TARGET, AgencyKpi, KpiReport, Period, ServiceKpi

FORMAT: Final = "smevbus-kpi/1"

#: (column, meaning) of the agencies table.
AGENCY_COLUMNS: Final = (
    ("period", "period label: YYYY-MM-DD (a day) or YYYY-MM (a month)"),
    ("period_start", "start of the period, inclusive, UTC ISO 8601"),
    ("period_end", "end of the period, exclusive, UTC ISO 8601"),
    ("agency", "mnemonic of the agency's information system on the bus"),
    ("message_type", "kind of record (namespace URI); empty: all kinds (the agency's total)"),
    ("volume", "requests sent to the agency in the period (test messages excluded)"),
    ("answered", "answered with data"),
    ("rejected", "answered with a refusal (NO_DATA, ACCESS_DENIED, ...)"),
    ("unavailable", "the adapter reported AGENCY_UNAVAILABLE"),
    ("timed_out", "expired, or unanswered longer than the answer timeout"),
    ("dead_lettered", "undeliverable: in the dead-letter queue, or purged from it"),
    ("pending", "still unanswered within the answer timeout when computed"),
    ("availability", "(answered + rejected) / settled requests (all but pending), 0..1"),
    ("meets_target", f"availability >= {AVAILABILITY_TARGET}: true or false"),
    ("rejection_rate", "rejected / (answered + rejected), 0..1"),
    ("answer_p50_s", "median seconds from request to final answer (answered, rejected)"),
    ("answer_p95_s", "95th percentile of the same, seconds"),
)
#: (column, meaning) of the services table.
SERVICE_COLUMNS: Final = (
    ("period", "period label, as in the agencies table"),
    ("period_start", "start of the period, inclusive, UTC ISO 8601"),
    ("period_end", "end of the period, exclusive, UTC ISO 8601"),
    ("service", "service code from the service catalogue"),
    ("volume", "service requests submitted in the period"),
    ("completed", "every part answered"),
    ("partial", "final with some optional parts missing"),
    ("failed", "a required part was refused"),
    ("timed_out", "the deadline passed before a required part was answered"),
    ("cancelled", "cancelled"),
    ("pending", "not final when computed"),
    ("result_p50_s", "median seconds from submission to final status (cancelled excluded)"),
    ("result_p95_s", "95th percentile of the same, seconds"),
)

_LABEL = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
Granularity = Literal["day", "month"]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fixed(value: float | None, places: int) -> float | None:
    return None if value is None else round(value, places)


def _period_cells(label: str, period: Period) -> dict[str, Any]:
    return {
        "period": label,
        "period_start": _iso(period.start),
        "period_end": _iso(period.end),
    }


def agency_row(label: str, period: Period, kpi: AgencyKpi) -> dict[str, Any]:
    """One row of the agencies table (``None``: no value)."""
    return _period_cells(label, period) | {
        "agency": kpi.agency,
        "message_type": kpi.message_type,
        "volume": kpi.volume,
        "answered": kpi.answered,
        "rejected": kpi.rejected,
        "unavailable": kpi.unavailable,
        "timed_out": kpi.timed_out,
        "dead_lettered": kpi.dead_lettered,
        "pending": kpi.pending,
        "availability": _fixed(kpi.availability, 4),
        "meets_target": kpi.meets_target,
        "rejection_rate": _fixed(kpi.rejection_rate, 4),
        "answer_p50_s": _fixed(kpi.answer_p50_s, 3),
        "answer_p95_s": _fixed(kpi.answer_p95_s, 3),
    }


def service_row(label: str, period: Period, kpi: ServiceKpi) -> dict[str, Any]:
    return _period_cells(label, period) | {
        "service": kpi.service,
        "volume": kpi.volume,
        "completed": kpi.completed,
        "partial": kpi.partial,
        "failed": kpi.failed,
        "timed_out": kpi.timed_out,
        "cancelled": kpi.cancelled,
        "pending": kpi.pending,
        "result_p50_s": _fixed(kpi.result_p50_s, 3),
        "result_p95_s": _fixed(kpi.result_p95_s, 3),
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_text(columns: Sequence[tuple[str, str]], rows: Iterable[dict[str, Any]]) -> str:
    """``rows`` as CSV with a header row: the open-data dialect (see the module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [name for name, _ in columns]
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell(row[name]) for name in names])
    return out.getvalue()


def _write(path: Path, content: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(content, encoding="utf-8")
    os.replace(partial, path)


def write_open_data(kpis: KpiReport, out_dir: Path, period: str) -> list[Path]:
    """Write the open-data files of ``kpis`` for the period labelled ``period`` into
    ``out_dir`` (made if missing); return their paths."""
    if not _LABEL.fullmatch(period):
        raise ValueError(f"period label {period!r}: letters, digits, '-' and '_' only")
    out_dir.mkdir(parents=True, exist_ok=True)
    agencies = [agency_row(period, kpis.period, a) for a in kpis.agencies]
    services = [service_row(period, kpis.period, s) for s in kpis.services]
    document = {
        "format": FORMAT,
        "period": period,
        "period_start": _iso(kpis.period.start),
        "period_end": _iso(kpis.period.end),
        "computed_at": _iso(kpis.computed_at),
        "answer_timeout_s": kpis.answer_timeout.total_seconds(),
        "availability_target": AVAILABILITY_TARGET,
        "columns": {
            "agencies": [{"name": n, "description": d} for n, d in AGENCY_COLUMNS],
            "services": [{"name": n, "description": d} for n, d in SERVICE_COLUMNS],
        },
        "agencies": agencies,
        "services": services,
    }
    paths = [
        out_dir / f"kpi-agencies-{period}.csv",
        out_dir / f"kpi-services-{period}.csv",
        out_dir / f"kpi-{period}.json",
    ]
    _write(paths[0], csv_text(AGENCY_COLUMNS, agencies))
    _write(paths[1], csv_text(SERVICE_COLUMNS, services))
    _write(paths[2], json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    return paths


def split_periods(start: datetime, end: datetime, unit: Granularity) -> list[tuple[str, Period]]:
    """``[start, end)`` cut at UTC day or month boundaries, each with its label; the
    first and last pieces are partial when ``start``/``end`` fall inside one."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    Period(start, end)  # validates
    pieces: list[tuple[str, Period]] = []
    cursor = start
    while cursor < end:
        floor = cursor.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == "day":
            label = floor.strftime("%Y-%m-%d")
            following = floor.fromordinal(floor.toordinal() + 1).replace(tzinfo=UTC)
        else:
            floor = floor.replace(day=1)
            label = floor.strftime("%Y-%m")
            year, month = divmod(floor.month, 12)
            following = floor.replace(year=floor.year + year, month=month + 1)
        stop = min(following, end)
        pieces.append((label, Period(cursor, stop)))
        cursor = stop
    return pieces
