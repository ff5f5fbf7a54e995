"""The mock registry's knobs: how slow, how often failing, down, or answering garbage.

:class:`MockZagsConfig` is what the service starts with; :class:`KnobsUpdate` is the
JSON body of ``POST /_control``, which changes any knob on the running service.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from adapters.zags.mock.dataset import DEFAULT_FAMILIES, DEFAULT_SEED


class Knobs(BaseModel):
    """Failure injection, settable at start and at runtime."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=600_000, description="delay before each answer")
    error_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="fraction of calls answered HTTP 500 + SOAP Fault INTERNAL_ERROR",
    )
    outage: bool = Field(default=False, description="answer SOAP calls 503 with no body")
    malformed: bool = Field(default=False, description="answer SOAP calls with cut-off XML")
    seed: int = Field(
        default=DEFAULT_SEED, description="seed of the error draw; setting it restarts the draw"
    )


class MockZagsConfig(Knobs):
    """Knobs plus what is fixed for the life of the service: the data set."""

    data_seed: int = Field(default=DEFAULT_SEED, description="seed of the generated records")
    families: int = Field(default=DEFAULT_FAMILIES, ge=0, le=1000)


class KnobsUpdate(BaseModel):
    """``POST /_control``: the knobs to change; absent ones keep their value."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    outage: bool | None = None
    malformed: bool | None = None
    seed: int | None = None
