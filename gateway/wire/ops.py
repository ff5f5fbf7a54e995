"""The ops REST API's wire models (``/api/v1/ops``, ``/api/v1/kpi``): shared by the server
(:mod:`gateway.api.ops`) and its client (:mod:`gateway.client.ops`, the CLI)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.wire.rest import MessageTrace, TransitionView

OPS_PREFIX = "/api/v1/ops"
KPI_PATH = "/api/v1/kpi"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueueOut(_Model):
    name: str = Field(description="`<direction>.<participant>`", examples=["requests.ZAGS"])
    direction: str
    participant: str
    ready: int = Field(description="Messages waiting to be taken")
    unacked: int | None = Field(description="Taken, not settled; null: unknown")
    consumers: int | None = Field(description="Consumers attached now; null: unknown")
    oldest_age_s: float | None = Field(
        description="Age of the oldest message journaled ACCEPTED, QUEUED or DELIVERED, seconds"
    )
    dead_letters: int = Field(description="Messages in the queue's dead-letter queue")


class QueueList(_Model):
    items: list[QueueOut]


class AgencyOut(_Model):
    participant: str
    requests: int = Field(description="Requests sent to the agency in the last hour")
    availability: float | None = Field(
        description="Share of settled requests answered (0..1) over the last hour"
    )
    answer_p50_s: float | None
    answer_p95_s: float | None
    reachable: bool | None = Field(description="Last connectivity check; null: never checked")
    detail: str = Field(description="What the last check found", examples=["200 in 12 ms"])


class AgencyList(_Model):
    items: list[AgencyOut]


class RateOut(_Model):
    at: AwareDatetime = Field(description="End of the window")
    window_s: float
    messages_per_s: float
    faults_per_s: float = Field(description="Messages the bus refused or failed, per second")
    latency_p50_s: float | None
    latency_p95_s: float | None


class OverviewOut(_Model):
    rate: RateOut = Field(description="The last step of `history`")
    history: list[RateOut] = Field(description="The last hour in equal steps, oldest first")
    queues: list[QueueOut]
    agencies: list[AgencyOut]
    availability_target: float


class TraceList(_Model):
    ident: str = Field(description="The MessageID or service request id asked for")
    traces: list[MessageTrace] = Field(
        description="The message's trace, or one per sent part of the service request"
    )


class DeadLetterOut(_Model):
    direction: str
    participant: str
    message_id: str
    reason: str = Field(examples=["delivery_limit"])
    detail: str
    message_type: str | None
    sender: str | None
    journal_state: str | None = Field(description="null: the journal does not know it")
    expires_at: AwareDatetime | None


class DeadLetterList(_Model):
    items: list[DeadLetterOut]


class DeadLetterDetailOut(_Model):
    summary: DeadLetterOut
    headers: dict[str, str]
    xml: str = Field(description="The message as queued (the sender's SOAP body), UTF-8")
    history: list[TransitionView]


class ReplayIn(_Model):
    message_ids: list[str] | None = Field(
        default=None, max_length=10_000, description="The ones to replay; null or absent: all"
    )


class Skipped(_Model):
    message_id: str
    why: str


class ReplayOut(_Model):
    replayed: list[str]
    skipped: list[Skipped]


class PurgeOut(_Model):
    purged: int = Field(description="Dead letters dropped, each journaled PURGED")


class AgencyKpiOut(_Model):
    """One agency's figures for one message type, or its total (``message_type`` null);
    the columns of the open-data agencies table."""

    agency: str
    message_type: str | None
    volume: int
    answered: int
    rejected: int
    unavailable: int
    timed_out: int
    dead_lettered: int
    pending: int
    availability: float | None
    meets_target: bool | None
    rejection_rate: float | None
    answer_p50_s: float | None
    answer_p95_s: float | None


class ServiceKpiOut(_Model):
    service: str
    volume: int
    completed: int
    partial: int
    failed: int
    timed_out: int
    cancelled: int
    pending: int
    result_p50_s: float | None
    result_p95_s: float | None


class KpiOut(_Model):
    period_start: AwareDatetime
    period_end: AwareDatetime
    computed_at: AwareDatetime
    answer_timeout_s: float
    availability_target: float
    agencies: list[AgencyKpiOut]
    services: list[ServiceKpiOut]
