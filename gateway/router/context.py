"""Everything the router stages need, handed in once (no globals, no environment)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.core.admission import TimePolicy
from gateway.core.clock import Clock, MessageIdSource
from gateway.core.registry import Registry
from gateway.crypto.xmldsig import XmlSigner, XmlVerifier
from gateway.xml.parse import LIMITS, XmlLimits
from gateway.xml.schema import TypeCatalog


@dataclass(frozen=True)
class BusContext:
    registry: Registry
    verifier: XmlVerifier
    #: The bus's own signer (participant ``registry.bus_mnemonic``): it signs what it hands out.
    bus_signer: XmlSigner
    catalog: TypeCatalog
    clock: Clock
    ids: MessageIdSource
    max_message_bytes: int = 5 * 1024 * 1024
    xml_limits: XmlLimits = LIMITS
    #: Documents larger than this (bytes) are read and checked in a worker thread.
    thread_above_bytes: int = 64 * 1024
    time_policy: TimePolicy = field(default_factory=TimePolicy)
