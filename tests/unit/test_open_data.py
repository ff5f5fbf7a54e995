"""gateway.ops.open_data: the files, their columns, and the docs that describe them."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.ops.kpi import AgencyKpi, KpiReport, Period, ServiceKpi
from gateway.ops.open_data import (
    AGENCY_COLUMNS,
    FORMAT,
    SERVICE_COLUMNS,
    split_periods,
    write_open_data,
)

ROOT = Path(__file__).resolve().parents[2]
MARCH = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
BIRTH = "urn://smevbus/types/zags/birth-record/1.0"

REPORT = KpiReport(
    period=MARCH,
    computed_at=datetime(2026, 4, 1, 0, 5, tzinfo=UTC),
    answer_timeout=timedelta(minutes=5),
    agencies=(
        AgencyKpi("ZAGS", None, 10, 4, 1, 1, 2, 1, 1, 2.0, 3.8),
        AgencyKpi("ZAGS", BIRTH, 8, 3, 1, 1, 2, 1, 0, 2.5, 3.85),
        AgencyKpi("FNS", BIRTH, 1, 0, 0, 0, 0, 0, 1, None, None),
    ),
    services=(ServiceKpi("child-birth-benefit", 6, 2, 1, 1, 0, 1, 1, 90.0, 273.0),),
)


def test_csv_and_json_hold_the_documented_columns_and_values(tmp_path: Path) -> None:
    paths = write_open_data(REPORT, tmp_path / "out", "2026-03")

    assert [p.name for p in paths] == [
        "kpi-agencies-2026-03.csv",
        "kpi-services-2026-03.csv",
        "kpi-2026-03.json",
    ]
    with paths[0].open(encoding="utf-8", newline="") as f:
        agencies = list(csv.DictReader(f))
    assert list(agencies[0]) == [name for name, _ in AGENCY_COLUMNS]
    total, birth, idle = agencies
    assert total["message_type"] == ""
    assert total["period_start"] == "2026-03-01T00:00:00Z"
    assert total["period_end"] == "2026-04-01T00:00:00Z"
    assert (total["availability"], total["rejection_rate"]) == ("0.5556", "0.2")
    assert total["meets_target"] == "false"
    assert (birth["message_type"], birth["answer_p95_s"]) == (BIRTH, "3.85")
    # Nothing settled: no availability, no percentile, no verdict.
    assert (idle["availability"], idle["answer_p50_s"], idle["meets_target"]) == ("", "", "")
    with paths[1].open(encoding="utf-8", newline="") as f:
        services = list(csv.DictReader(f))
    assert list(services[0]) == [name for name, _ in SERVICE_COLUMNS]
    assert services[0]["result_p95_s"] == "273.0"

    document = json.loads(paths[2].read_text(encoding="utf-8"))
    assert document["format"] == FORMAT
    assert document["answer_timeout_s"] == 300.0
    assert [c["name"] for c in document["columns"]["agencies"]] == list(agencies[0])
    assert document["agencies"][0]["availability"] == 0.5556
    assert document["agencies"][2]["availability"] is None
    assert document["services"][0]["completed"] == 2
    assert not list((tmp_path / "out").glob(".*"))  # no partial files left


@pytest.mark.parametrize("label", ["../2026-03", "2026/03", "", "a b", ".hidden"])
def test_a_period_label_cannot_leave_the_directory(tmp_path: Path, label: str) -> None:
    with pytest.raises(ValueError, match="period label"):
        write_open_data(REPORT, tmp_path, label)


def test_split_periods_by_month_and_day() -> None:
    start = datetime(2025, 11, 15, 12, tzinfo=UTC)
    months = split_periods(start, datetime(2026, 2, 1, tzinfo=UTC), "month")
    assert [(label, p.start.day, p.end.month) for label, p in months] == [
        ("2025-11", 15, 12),
        ("2025-12", 1, 1),
        ("2026-01", 1, 2),
    ]
    msk = timezone(timedelta(hours=3))
    days = split_periods(
        datetime(2026, 3, 2, 1, tzinfo=msk), datetime(2026, 3, 3, tzinfo=UTC), "day"
    )
    assert [(label, p.start.hour, p.end.hour) for label, p in days] == [
        ("2026-03-01", 22, 0),
        ("2026-03-02", 0, 0),
    ]


def test_the_operations_guide_documents_every_column() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = guide.split("### Open data", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, re.MULTILINE))
    assert {name for name, _ in AGENCY_COLUMNS + SERVICE_COLUMNS} <= documented
