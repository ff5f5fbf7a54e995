"""Reading a ``/metrics`` page back, as Prometheus would: :func:`samples` parses the text
exposition with prometheus-client's own parser; :class:`Samples` answers "what is the
value of this series" (0 for a series not exported yet, so a test can take deltas)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.metrics import render


@dataclass(frozen=True)
class Samples:
    #: (sample name, its labels sorted) -> value.
    values: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]
    #: Family name -> type (``counter``, ``gauge``, ``histogram``, ...).
    types: Mapping[str, str]

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels``; 0.0 if there is none."""
        return self.values.get((name, tuple(sorted(labels.items()))), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, tuple(sorted(labels.items()))) in self.values

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and wanted <= set(ls))


def samples(text: str) -> Samples:
    """Parse a text exposition (raises ``ValueError`` if it is not one)."""
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            values[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return Samples(values, types)


def this_process() -> Samples:
    """This process's own metrics, as its ``/metrics`` would show them."""
    return samples(render().decode())
