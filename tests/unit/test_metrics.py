"""gateway.ops.metrics: names, labels and values as Prometheus parses them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from gateway.ops import metrics
from gateway.ops.metrics import (
    METRIC_NAMES,
    BusMetrics,
    QueueStats,
    Recorder,
    Stage,
    render,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(BusMetrics(CollectorRegistry()))


def families(recorder: Recorder) -> dict[str, Metric]:
    text = render(recorder.metrics.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(recorder: Recorder, name: str, labels: dict[str, str]) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, ``None`` if absent."""
    hits = [
        s.value
        for fam in families(recorder).values()
        for s in fam.samples
        if s.name == name and s.labels == labels
    ]
    assert len(hits) <= 1
    return hits[0] if hits else None


def exposed_name(fam: Metric) -> str:
    return fam.name + "_total" if fam.type == "counter" else fam.name


def test_every_metric_is_exposed_with_its_type_even_before_a_sample(recorder: Recorder) -> None:
    found = families(recorder)
    smevbus = {exposed_name(f): f.type for f in found.values() if f.name.startswith("smevbus_")}

    assert set(smevbus) == METRIC_NAMES
    assert smevbus["smevbus_stage_duration_seconds"] == "histogram"
    assert smevbus["smevbus_agency_answer_seconds"] == "histogram"
    assert smevbus["smevbus_messages_total"] == "counter"
    assert smevbus["smevbus_queue_oldest_message_age_seconds"] == "gauge"
    assert smevbus["smevbus_certificate_expiry_timestamp_seconds"] == "gauge"


def test_counters_carry_their_labels_and_counts(recorder: Recorder) -> None:
    zags = "urn://smevbus/types/zags-birth/1.0"
    recorder.count_message(zags, "PORTAL71", "ZAGS", "accepted")
    recorder.count_message(zags, "PORTAL71", "ZAGS", "accepted")
    recorder.count_message(zags, "PORTAL71", "ZAGS", "duplicate")
    recorder.count_fault("signature_invalid")
    recorder.count_service_request("birth-benefit", "PARTIAL", "deadline")
    recorder.count_service_request("birth-benefit", "COMPLETED", None)
    recorder.count_callback("retry")

    labels = {"message_type": zags, "sender": "PORTAL71", "recipient": "ZAGS"}
    assert sample(recorder, "smevbus_messages_total", labels | {"outcome": "accepted"}) == 2
    assert sample(recorder, "smevbus_messages_total", labels | {"outcome": "duplicate"}) == 1
    assert sample(recorder, "smevbus_faults_total", {"code": "signature_invalid"}) == 1
    assert (
        sample(
            recorder,
            "smevbus_service_requests_total",
            {"service": "birth-benefit", "status": "PARTIAL", "completed_by": "deadline"},
        )
        == 1
    )
    assert (
        sample(
            recorder,
            "smevbus_service_requests_total",
            {"service": "birth-benefit", "status": "COMPLETED", "completed_by": ""},
        )
        == 1
    )
    assert sample(recorder, "smevbus_callbacks_total", {"outcome": "retry"}) == 1


def test_stage_histogram_buckets_hold_the_observations(recorder: Recorder) -> None:
    recorder.observe_stage(Stage.PARSE, 0.0007)
    recorder.observe_stage("parse", 0.02)
    recorder.observe_stage("agency_call", 3.0)

    name = "smevbus_stage_duration_seconds"
    assert sample(recorder, name + "_count", {"stage": "parse"}) == 2
    assert sample(recorder, name + "_sum", {"stage": "parse"}) == pytest.approx(0.0207)
    assert sample(recorder, name + "_bucket", {"stage": "parse", "le": "0.001"}) == 1
    assert sample(recorder, name + "_bucket", {"stage": "parse", "le": "0.025"}) == 2
    assert sample(recorder, name + "_bucket", {"stage": "agency_call", "le": "2.5"}) == 0
    assert sample(recorder, name + "_bucket", {"stage": "agency_call", "le": "5.0"}) == 1


def test_a_negative_stage_time_is_observed_as_zero(recorder: Recorder) -> None:
    recorder.observe_stage(Stage.VERIFY, -0.5)  # a clock step

    name = "smevbus_stage_duration_seconds"
    assert sample(recorder, name + "_sum", {"stage": "verify"}) == 0.0
    assert sample(recorder, name + "_bucket", {"stage": "verify", "le": "0.001"}) == 1


def test_timed_observes_a_block_that_raises(recorder: Recorder) -> None:
    with pytest.raises(KeyError), recorder.timed(Stage.JOURNAL):
        raise KeyError("the caller's own error passes through")

    name = "smevbus_stage_duration_seconds"
    assert sample(recorder, name + "_count", {"stage": "journal"}) == 1


def test_agency_requests_count_every_outcome_and_time_only_answers(recorder: Recorder) -> None:
    recorder.count_agency_request("ZAGS", "answered", 1.5)
    recorder.count_agency_request("ZAGS", "unavailable", None)

    assert (
        sample(
            recorder, "smevbus_agency_requests_total", {"agency": "ZAGS", "outcome": "unavailable"}
        )
        == 1
    )
    name = "smevbus_agency_answer_seconds"
    assert sample(recorder, name + "_sum", {"agency": "ZAGS", "outcome": "answered"}) == 1.5
    assert sample(recorder, name + "_count", {"agency": "ZAGS", "outcome": "unavailable"}) is None


def test_gauges_hold_the_last_sampled_figures(recorder: Recorder) -> None:
    recorder.set_queues([QueueStats("requests.ZAGS", 10, 2, 0, 45.5)])
    recorder.set_queues([QueueStats("requests.ZAGS", 7, 1, 3, 12.0)])
    recorder.set_dead_letters("ZAGS", {"delivery_limit": 4, "expired": 0})
    recorder.set_availability({"ZAGS": 0.9, "MVD_MIGR": None})
    expiry = datetime(2027, 3, 1, tzinfo=UTC)
    recorder.set_certificate_expiry("ZAGS", expiry)

    q = {"queue": "requests.ZAGS"}
    assert sample(recorder, "smevbus_queue_messages", q | {"state": "ready"}) == 7
    assert sample(recorder, "smevbus_queue_messages", q | {"state": "unacked"}) == 1
    assert sample(recorder, "smevbus_queue_consumers", q) == 3
    assert sample(recorder, "smevbus_queue_oldest_message_age_seconds", q) == 12.0
    dead = "smevbus_dead_letters"
    assert sample(recorder, dead, {"participant": "ZAGS", "reason": "delivery_limit"}) == 4
    assert sample(recorder, dead, {"participant": "ZAGS", "reason": "expired"}) == 0
    assert sample(recorder, "smevbus_agency_availability_ratio", {"agency": "ZAGS"}) == 0.9
    assert sample(recorder, "smevbus_agency_availability_ratio", {"agency": "MVD_MIGR"}) is None
    assert (
        sample(recorder, "smevbus_certificate_expiry_timestamp_seconds", {"participant": "ZAGS"})
        == expiry.timestamp()
    )


def test_values_outside_their_enums_are_dropped_not_raised(recorder: Recorder) -> None:
    with capture_logs() as logs:
        recorder.observe_stage("no-such-stage", 1.0)
        recorder.count_message("t", "A", "B", "teleported")
        recorder.count_fault("Not A Code")
        recorder.count_callback("maybe")

    assert not any(f.samples for f in families(recorder).values() if f.name.startswith("smevbus_"))
    assert {e["helper"] for e in logs if e["event"] == "metric_not_recorded"} == {
        "observe_stage",
        "count_message",
        "count_fault",
        "count_callback",
    }


def test_a_failing_metric_never_reaches_the_caller_and_is_logged_once(recorder: Recorder) -> None:
    class Broken:
        def labels(self, *_: str) -> None:
            raise RuntimeError("mmap file gone")

    recorder.metrics.faults = Broken()  # type: ignore[assignment]
    metrics._reported.discard("count_fault")
    with capture_logs() as logs:
        recorder.count_fault("internal")
        recorder.count_fault("internal")

    failures = [e for e in logs if e["event"] == "metric_not_recorded"]
    assert len(failures) == 1
    assert "mmap file gone" in failures[0]["error"]


def test_the_process_registry_carries_process_metrics_and_the_bus_metrics() -> None:
    metrics.count_fault("quota_exceeded")

    found = {f.name: f for f in text_string_to_metric_families(render().decode())}
    assert "process_cpu_seconds" in found or "python_info" in found
    assert any(s.labels == {"code": "quota_exceeded"} for s in found["smevbus_faults"].samples)


_WORKER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from gateway.ops import metrics
    n = int(sys.argv[1])
    for _ in range(n):
        metrics.count_fault("schema_violation")
        metrics.observe_stage("parse", 0.002)
    metrics.set_queues([metrics.QueueStats("requests.ZAGS", n, 0, 1)])
    """
)


def test_multiprocess_mode_sums_counters_of_every_worker(tmp_path: Path) -> None:
    directory = metrics.prepare_multiprocess_dir(tmp_path / "prom")
    (directory / "counter_999999.db").write_bytes(b"left over from an earlier run")
    metrics.prepare_multiprocess_dir(directory)
    assert list(directory.iterdir()) == []

    for n in (3, 4):  # one after the other: the second sets the queue gauge last
        subprocess.run(
            [sys.executable, "-c", _WORKER, str(n)],
            env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
            cwd=ROOT,
            check=True,
            timeout=60,
        )

    text = render(multiprocess_dir=directory).decode()
    found = {f.name: f for f in text_string_to_metric_families(text)}
    faults = [s for s in found["smevbus_faults"].samples if s.name == "smevbus_faults_total"]
    assert [(s.labels, s.value) for s in faults] == [({"code": "schema_violation"}, 7.0)]
    counts = [
        s.value
        for s in found["smevbus_stage_duration_seconds"].samples
        if s.name == "smevbus_stage_duration_seconds_count"
    ]
    assert counts == [7.0]
    ready = [
        s.value
        for s in found["smevbus_queue_messages"].samples
        if s.labels == {"queue": "requests.ZAGS", "state": "ready"}
    ]
    assert ready == [4.0]
