"""docker-compose.yml, deploy/prometheus and deploy/grafana checked against the code,
without Docker: settings, commands, files, ports, tokens and metric names."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from adapters.catalog import ADAPTERS
from gateway.cli import app
from gateway.config import REPO_ROOT, Settings
from gateway.ops.metrics import METRIC_NAMES
from tests.compose_file import Compose, Service, localise

COMPOSE = Compose()
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
OURS = [s for s in COMPOSE.services if s.ours]
ADAPTER_SERVICES = [s for s in OURS if s.argv[1:2] == ["adapter"]]
#: Long-running services (all but the one-shot `keys`).
RUNNING = [s for s in COMPOSE.services if s.spec.get("restart") != "no"]

# PromQL: what is not a metric name (functions are followed by "(").
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_PROMQL_WORDS |= {"unless", "bool", "offset", "le", "inf", "nan"}
_HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)  # label matchers, ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text))
    return {_HISTOGRAM_SERIES.sub("", n) for n in names if n.lower() not in _PROMQL_WORDS}


def known_metric(name: str) -> bool:
    """A smevbus metric, or one of RabbitMQ's plugin, prometheus-client's process and
    Python collectors, or Prometheus's own ``up``."""
    return name in METRIC_NAMES or name == "up" or name.startswith(("rabbitmq_", "process_"))


def settings_of(service: Service, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in service.environment.items():
        monkeypatch.setenv(key, value)
    return Settings()


def listen_port(service: Service) -> int:
    """The port the service's process listens on, from its command and settings."""
    if service.ours and service.argv[1:2] == ["serve"]:
        return Settings.model_fields["http_port"].default  # type: ignore[no-any-return]
    if service in ADAPTER_SERVICES:
        port = service.option("--ops-port") or service.environment["SMEVBUS_ADAPTER_OPS_PORT"]
        return int(port)
    port_option = service.option("--port")
    assert port_option is not None, service.name
    return int(port_option)


def dashboard_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (path.name, panel, target)
        for path in DASHBOARDS
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]
        for target in panel.get("targets", [])
    ]


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize("service", OURS, ids=lambda s: s.name)
def test_every_smevbus_variable_is_a_setting_and_valid(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {f"SMEVBUS_{name.upper()}" for name in Settings.model_fields}
    assert service.environment, service.name
    assert {k for k in service.environment if k.startswith("SMEVBUS_")} <= fields
    assert set(service.environment) <= fields  # nothing else reaches our processes
    settings = settings_of(service, monkeypatch)  # values parse (JSON maps, numbers)
    assert settings.transport == "amqp"
    assert urlsplit(settings.database_url).hostname == "postgres"
    assert urlsplit(settings.amqp_url).hostname == "rabbitmq"


def test_the_prometheus_token_is_an_operator_token_of_every_scraped_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = (PROMETHEUS / "ops-token").read_text(encoding="utf-8").strip()
    for service in [COMPOSE.service("gateway"), *ADAPTER_SERVICES]:
        settings = settings_of(service, monkeypatch)
        assert token in settings.ops_tokens, service.name
        assert not settings.metrics_public, service.name


def test_the_gateway_reads_the_management_api_and_probes_every_agency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_of(COMPOSE.service("gateway"), monkeypatch)
    assert settings.rabbitmq_management_url is not None
    management = urlsplit(settings.rabbitmq_management_url)
    assert (management.hostname, management.port) == ("rabbitmq", 15672)
    assert "15672:15672" in COMPOSE.service("rabbitmq").spec["ports"]
    assert set(settings.agency_probes) == {spec.mnemonic for spec in ADAPTERS.values()}
    mocks = {s.name: listen_port(s) for s in OURS if s.name.startswith("mock-")}
    healthchecks = {s.name: " ".join(s.spec["healthcheck"]["test"]) for s in RUNNING if s.ours}
    for participant, url in settings.agency_probes.items():
        probed = urlsplit(url)
        assert mocks.get(str(probed.hostname)) == probed.port, participant
        # the very URL the mock's own health check asks for
        assert f"127.0.0.1:{probed.port}{probed.path}" in healthchecks[str(probed.hostname)]


# --- commands ---------------------------------------------------------------------


@pytest.mark.parametrize("service", OURS, ids=lambda s: s.name)
def test_each_command_is_one_the_image_can_run(service: Service) -> None:
    argv = service.argv
    if argv[0] == "smevbus":
        # --help after the arguments: click refuses an unknown command or option (2)
        result = CliRunner().invoke(app, [*argv[1:], "--help"])
        assert result.exit_code == 0, result.output
    else:
        assert argv[:2] == ["python", "-m"]
        assert find_spec(argv[2]) is not None, argv[2]


def test_every_adapter_runs_once_against_the_gateway_and_its_mock() -> None:
    assert sorted(s.argv[2] for s in ADAPTER_SERVICES) == sorted(ADAPTERS)
    for service in ADAPTER_SERVICES:
        gateway, agency = service.option("--gateway-url"), service.option("--agency-url")
        assert gateway == f"http://gateway:{listen_port(COMPOSE.service('gateway'))}"
        assert agency is not None
        mock = COMPOSE.service(str(urlsplit(agency).hostname))
        assert urlsplit(agency).port == listen_port(mock)
        assert set(service.spec["depends_on"]) == {"gateway", mock.name}
    mvd = COMPOSE.service("adapter-mvd")
    assert "--push" in mvd.argv  # push consumes from RabbitMQ: needs the broker URL
    assert urlsplit(mvd.environment["SMEVBUS_AMQP_URL"]).hostname == "rabbitmq"


# --- health checks, restarts, volumes, files --------------------------------------


@pytest.mark.parametrize("service", RUNNING, ids=lambda s: s.name)
def test_every_running_service_has_a_health_check_and_restarts(service: Service) -> None:
    assert service.spec["restart"] == "unless-stopped"
    test = " ".join(service.spec["healthcheck"]["test"])
    if service.ours:
        assert f"127.0.0.1:{listen_port(service)}" in test


def test_the_gateway_health_check_asks_health_and_ready() -> None:
    test = " ".join(COMPOSE.service("gateway").spec["healthcheck"]["test"])
    assert "'/health'" in test
    assert "'/ready'" in test
    for service in ADAPTER_SERVICES:
        assert "/health" in " ".join(service.spec["healthcheck"]["test"])
        assert service.spec["depends_on"]["gateway"] == {"condition": "service_healthy"}


def test_every_stateful_service_keeps_its_data_in_a_named_volume() -> None:
    data = {
        "rabbitmq": "/var/lib/rabbitmq",
        "postgres": "/var/lib/postgresql/data",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
        "gateway": "/app/keys",
    }
    volumes = set(COMPOSE.document["volumes"])
    for name, path in data.items():
        mounts = [v.split(":") for v in COMPOSE.service(name).spec["volumes"]]
        assert next(source for source, target, *_ in mounts if target == path) in volumes


def test_every_file_the_deployment_names_exists() -> None:
    assert (REPO_ROOT / COMPOSE.service("gateway").spec["build"] / "Dockerfile").is_file()
    _, sources, _ = COMPOSE.image
    assert sources
    assert all((REPO_ROOT / s).exists() for s in sources)
    assert {m for _, host, m in COMPOSE.bind_mounts() if not host.exists()} == set()
    env, _, _ = COMPOSE.image
    for key in ("SMEVBUS_REGISTRY_FILE", "SMEVBUS_XSD_DIR"):  # /app/... from COPY
        assert (REPO_ROOT / Path(env[key]).relative_to("/app")).exists()


def test_rabbitmq_runs_its_management_and_prometheus_plugins() -> None:
    (plugins,) = [h for s, h, t in COMPOSE.bind_mounts() if t == "/etc/rabbitmq/enabled_plugins"]
    text = plugins.read_text(encoding="utf-8")
    assert re.fullmatch(r"\[[a-z_, ]+\]\.\s*", text)  # an Erlang list term
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= set(re.findall(r"\w+", text))
    assert "15692:15692" in COMPOSE.service("rabbitmq").spec["ports"]


# --- Prometheus -------------------------------------------------------------------


def prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return config


def test_prometheus_loads_its_mounted_config_rules_and_token() -> None:
    mounts = {t: h.resolve() for s, h, t in COMPOSE.bind_mounts() if s == "prometheus"}
    command = COMPOSE.service("prometheus").spec["command"]
    config_path = next(c.split("=", 1)[1] for c in command if c.startswith("--config.file="))
    assert mounts[config_path] == (PROMETHEUS / "prometheus.yml").resolve()
    # relative paths in prometheus.yml are resolved against its directory
    here = Path(config_path).parent
    config = prometheus_config()
    named = [*config["rule_files"]]
    named += [job["authorization"]["credentials_file"] for job in config["scrape_configs"]
              if "authorization" in job]  # fmt: skip
    for relative in named:
        assert mounts[str(here / relative)] == (PROMETHEUS / relative).resolve()


def test_scrape_targets_are_the_services_on_their_ports() -> None:
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    targets = {
        name: {t for c in job["static_configs"] for t in c["targets"]} for name, job in jobs.items()
    }
    gateway = COMPOSE.service("gateway")
    assert targets["smevbus-gateway"] == {f"gateway:{listen_port(gateway)}"}
    assert targets["smevbus-adapters"] == {f"{s.name}:{listen_port(s)}" for s in ADAPTER_SERVICES}
    assert targets["rabbitmq"] == {"rabbitmq:15692"}
    for name in ("smevbus-gateway", "smevbus-adapters"):
        assert jobs[name]["metrics_path"] == "/metrics"


def test_alerts_read_only_known_metrics() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    used = {n for g in rules["groups"] for r in g["rules"] for n in metric_names(r["expr"])}
    assert "smevbus_dead_letters" in used
    assert {n for n in used if not known_metric(n)} == set()


def test_the_metric_name_reader_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(foo_seconds_bucket{a="x y"}[5m])))'
        " and on (queue) bar > 0.5 unless baz offset 5m"
    )
    assert metric_names(expr) == {"foo_seconds", "bar", "baz"}


# --- Grafana ----------------------------------------------------------------------


def provisioned(kind: str) -> dict[str, Any]:
    (path,) = (GRAFANA / "provisioning" / kind).glob("*.yml")
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards() -> None:
    mounts = {t: h.resolve() for s, h, t in COMPOSE.bind_mounts() if s == "grafana"}
    assert mounts["/etc/grafana/provisioning"] == (GRAFANA / "provisioning").resolve()
    (provider,) = provisioned("dashboards")["providers"]
    assert mounts[provider["options"]["path"]] == (GRAFANA / "dashboards").resolve()
    (source,) = provisioned("datasources")["datasources"]
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus"
    assert f"{url.port}:{url.port}" in COMPOSE.service(str(url.hostname)).spec["ports"]
    home = COMPOSE.service("grafana").spec["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert Path(home).parent == Path(provider["options"]["path"])
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_with_unique_panel_ids(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    (source,) = provisioned("datasources")["datasources"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) for i in ids)
    assert dashboard["uid"]
    assert dashboard["title"]
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboards_read_only_known_metrics_and_show_what_operators_need() -> None:
    used = {n for _, _, target in dashboard_targets() for n in metric_names(target["expr"])}
    assert {n for n in used if not known_metric(n)} == set()
    assert {
        "smevbus_messages_total",
        "smevbus_faults_total",
        "smevbus_stage_duration_seconds",
        "smevbus_queue_messages",
        "smevbus_queue_oldest_message_age_seconds",
        "smevbus_queue_consumers",
        "smevbus_dead_letters",
        "smevbus_agency_availability_ratio",
        "smevbus_agency_answer_seconds",
        "smevbus_certificate_expiry_timestamp_seconds",
    } <= used
    stage = [t["expr"] for _, _, t in dashboard_targets() if "stage_duration" in t["expr"]]
    quantiles = {re.match(r"histogram_quantile\(([0-9.]+),", e).group(1) for e in stage}  # type: ignore[union-attr]
    assert quantiles == {"0.5", "0.95"}


def test_the_availability_panel_marks_the_95_percent_target() -> None:
    (panel,) = {
        id(p): p for _, p, t in dashboard_targets() if "availability_ratio" in t["expr"]
    }.values()
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.95]


def test_promtool_accepts_every_dashboard_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found (Debian package prometheus)")
    rules = [
        {"record": f"dashboard:{Path(name).stem}:{panel['id']}_{target['refId']}",
         "expr": target["expr"]}
        for name, panel, target in dashboard_targets()
    ]  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_every_smevbus_command_in_the_operations_guide_is_one_the_cli_accepts() -> None:
    guide = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", guide, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split(" #")[0])
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words.pop(0)  # VAR=value before the command
            if words[:1] == ["smevbus"]:
                commands.append([w for w in words[1:] if w != "&"])
    assert len(commands) > 10
    for args in commands:
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)


# --- running it locally -----------------------------------------------------------


def test_localise_replaces_every_compose_address_or_fails() -> None:
    addresses = {"gateway:8080": "127.0.0.1:4000", "rabbitmq:15672": "127.0.0.1:4001"}
    text = '{"a": "http://gateway:8080/health", "b": "http://rabbitmq:15672"}'
    assert localise(text, addresses) == (
        '{"a": "http://127.0.0.1:4000/health", "b": "http://127.0.0.1:4001"}'
    )
    with pytest.raises(KeyError, match="mock-fns:8702"):
        localise("http://mock-fns:8702", addresses)
