"""deploy/prometheus: the alert rules under promtool, and their metric names.

``promtool`` comes from the Debian package ``prometheus`` (scripts/bootstrap.sh
installs it). Without it these cases are skipped, except under ``CI=true``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.ops.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
RULE_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yml"
_SMEVBUS_NAME = re.compile(r"\bsmevbus_[a-z0-9_]+\b")
_HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool not found (Debian package prometheus; scripts/bootstrap.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: the rule tests must run)")
        pytest.skip(reason)
    return path


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_rule_tests_pass() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_accepts_the_scrape_config_and_rules(tmp_path: Path) -> None:
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(DEPLOY / name, tmp_path / name)
    (tmp_path / "ops-token").write_text("an-operator-token\n")
    result = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 rules found" in result.stdout


def test_every_alert_is_tested_by_promtool() -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    assert tested == {rule["alert"] for rule in rules()}


def test_alerts_use_only_metrics_the_bus_defines() -> None:
    used = {
        _HISTOGRAM_SERIES.sub("", name)
        for rule in rules()
        for name in _SMEVBUS_NAME.findall(rule["expr"])
    }
    assert used
    assert used <= METRIC_NAMES, used - METRIC_NAMES


def test_the_operations_guide_has_every_metric_and_a_runbook_for_every_alert() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert {name for name in METRIC_NAMES if f"`{name}`" not in guide} == set()
    assert {r["alert"] for r in rules() if f"`{r['alert']}`" not in guide} == set()
