"""The mock's failure switches: set at start (config) and flipped at run time (``/_control``).

``error_rate`` draws from a seeded RNG once per query, so a given seed and setting give
the same sequence of failures on every run.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class MockConfig:
    """How the mock behaves.

    * ``latency_ms``: delay before every a query answer;
    * ``error_rate``: share of queries answered HTTP 500 (0..1);
    * ``outage``: every query answered HTTP 503;
    * ``malformed``: successful answers cut in half (not well-formed XML);
    * ``seed``: seed of the error-rate RNG.
    """

    latency_ms: int = 0
    error_rate: float = 0.0
    outage: bool = False
    malformed: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")


class ControlUpdate(BaseModel):
    """Body of ``POST /_control``: the knobs to change; ``reset`` first restores the
    start-up config and reseeds the RNG."""

    model_config = ConfigDict(extra="forbid")

    reset: bool = False
    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    outage: bool | None = None
    malformed: bool | None = None
    seed: int | None = None


class Knobs:
    """The live config of a running mock, its RNG and a query counter."""

    def __init__(self, initial: MockConfig) -> None:
        self.initial = initial
        self.config = initial
        self.rng = random.Random(initial.seed)  # noqa: S311 - failure injection, not security
        self.queries = 0

    def update(self, change: ControlUpdate) -> MockConfig:
        """Apply ``change``; a new ``seed`` (or ``reset``) restarts the RNG sequence."""
        if change.reset:
            self.config = self.initial
            self.rng.seed(self.initial.seed)
            self.queries = 0
        fields = change.model_dump(exclude={"reset"}, exclude_none=True)
        if fields:
            self.config = dataclasses.replace(self.config, **fields)
        if "seed" in fields:
            self.rng.seed(self.config.seed)
        return self.config

    def draw_error(self) -> bool:
        """One draw per query: True when this query must fail with HTTP 500."""
        return self.rng.random() < self.config.error_rate

    def snapshot(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.config), "queries": self.queries}
