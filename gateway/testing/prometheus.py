"""A real ``prometheus`` server for end-to-end tests: it scrapes our processes' /metrics
and evaluates the repository's alert rules, as the one docker-compose runs does.

Its configuration is written as JSON (which is YAML) in a directory of the caller's;
its data lives there too. :meth:`PrometheusProcess.query` asks its HTTP API.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.config import REPO_ROOT
from gateway.testing.processes import ServiceProcess, free_port

ALERT_RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    #: ``host:port`` of each process whose /metrics the job scrapes.
    targets: tuple[str, ...]
    #: The bearer token the scrapes send (an operator token), if /metrics needs one.
    token: str | None = None


def prometheus_config(
    jobs: Sequence[ScrapeJob], rule_files: Sequence[Path], every_s: float
) -> dict[str, Any]:
    """A configuration scraping ``jobs`` and evaluating ``rule_files`` every ``every_s``."""
    every = f"{every_s:g}s"

    def job(spec: ScrapeJob) -> dict[str, Any]:
        found: dict[str, Any] = {
            "job_name": spec.name,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": list(spec.targets)}],
        }
        if spec.token is not None:
            found["authorization"] = {"type": "Bearer", "credentials": spec.token}
        return found

    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [job(spec) for spec in jobs],
    }


class PrometheusProcess(ServiceProcess):
    """``prometheus`` on a free loopback port with its config and data under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        jobs: Sequence[ScrapeJob],
        *,
        rule_files: Sequence[Path] = (ALERT_RULES,),
        every_s: float = 1.0,
    ) -> None:
        executable = shutil.which("prometheus")
        if executable is None:
            raise FileNotFoundError("prometheus is not installed")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps(prometheus_config(jobs, rule_files, every_s), indent=2))
        argv = [
            executable,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        super().__init__(argv, workdir / "prometheus.log", ready_url=self.base_url + "/-/ready")

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now: ``[{"metric": {...}, "value": [...]}]``."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            answer = (await http.get("/api/v1/query", params={"query": expr})).raise_for_status()
        body: dict[str, Any] = answer.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus refused {expr!r}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def targets_up(self) -> dict[str, str]:
        """``scrapeUrl`` -> ``health`` ("up", "down", "unknown") of every active target."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            answer = (await http.get("/api/v1/targets")).raise_for_status()
        return {t["scrapeUrl"]: t["health"] for t in answer.json()["data"]["activeTargets"]}
