"""Who is on the bus and what each participant may ask and answer.

The registry is the bus's authorization table (X-Road's "global configuration", SMEV 3's
registry of information systems). It is parsed from TOML text here; reading the file
is the caller's business, so this module stays pure.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.core.errors import (
    AccessDenied,
    DestinationUnknown,
    InternalError,
    SenderNotRegistered,
)

MNEMONIC_PATTERN = r"^[A-Z][A-Z0-9_]{1,31}$"


class Participant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mnemonic: str = Field(pattern=MNEMONIC_PATTERN)
    name: str = Field(min_length=1)
    #: Certificate subject common name the participant signs with.
    certificate_cn: str = Field(min_length=1)
    #: SHA-256 fingerprints (lowercase hex) of its certificates; empty means "any
    #: certificate with this CN that chains to the trust store" (fine for a dev PKI,
    #: pin fingerprints in production).
    certificate_fingerprints: frozenset[str] = frozenset()
    may_request: frozenset[str] = frozenset()
    provides: frozenset[str] = frozenset()


class Registry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The bus's own identity: it signs what it delivers (SMEVSignature).
    bus_mnemonic: str = Field(default="SMEVBUS", pattern=MNEMONIC_PATTERN)
    participants: tuple[Participant, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        seen: set[str] = set()
        providers: dict[str, str] = {}
        for p in self.participants:
            if p.mnemonic in seen:
                raise ValueError(f"participant {p.mnemonic} is registered twice")
            seen.add(p.mnemonic)
            for message_type in p.provides:
                if message_type in providers:
                    raise ValueError(
                        f"message type {message_type} is provided by both "
                        f"{providers[message_type]} and {p.mnemonic}; exactly one may provide it"
                    )
                providers[message_type] = p.mnemonic
        return self

    # --- lookups --------------------------------------------------------------

    def get(self, mnemonic: str) -> Participant:
        for p in self.participants:
            if p.mnemonic == mnemonic:
                return p
        raise SenderNotRegistered(
            f"participant {mnemonic!r} is not registered on the bus", participant=mnemonic
        )

    def identify(self, certificate_cn: str, fingerprint: str) -> Participant:
        """The participant a (trusted) certificate belongs to: the certificate decides."""
        for p in self.participants:
            if p.certificate_cn != certificate_cn:
                continue
            if p.certificate_fingerprints and fingerprint not in p.certificate_fingerprints:
                continue
            return p
        raise SenderNotRegistered(
            f"no registered participant signs with the certificate CN={certificate_cn!r} "
            f"(SHA-256 {fingerprint}); register it or sign with the registered certificate",
            certificate_cn=certificate_cn,
            fingerprint=fingerprint,
        )

    def provider_of(self, message_type: str) -> Participant:
        for p in self.participants:
            if message_type in p.provides:
                return p
        raise DestinationUnknown(
            f"no participant provides message type {message_type}", message_type=message_type
        )

    def authorize_request(self, sender: Participant, message_type: str) -> Participant:
        """Check ``sender`` may ask for ``message_type``; return the provider to route to."""
        provider = self.provider_of(message_type)
        if message_type not in sender.may_request:
            raise AccessDenied(
                f"{sender.mnemonic} is not allowed to request {message_type}; "
                "ask the bus operator to grant it in the registry",
                participant=sender.mnemonic,
                message_type=message_type,
            )
        return provider

    def authorize_requests(self, mnemonic: str, message_types: Iterable[str]) -> None:
        """Check ``mnemonic`` may ask for every one of ``message_types`` (the parts of a
        service request), before anything of it is stored or sent."""
        sender = self.get(mnemonic)
        denied = sorted(set(message_types) - sender.may_request)
        if denied:
            raise AccessDenied(
                f"{mnemonic} is not allowed to request {', '.join(denied)}; "
                "ask the bus operator to grant it in the registry",
                participant=mnemonic,
                message_types=denied,
            )

    def authorize_response(self, provider: Participant, message_type: str) -> None:
        if message_type not in provider.provides:
            raise AccessDenied(
                f"{provider.mnemonic} does not provide {message_type} and may not answer it",
                participant=provider.mnemonic,
                message_type=message_type,
            )

    @property
    def mnemonics(self) -> tuple[str, ...]:
        return tuple(p.mnemonic for p in self.participants)


def parse_registry(text: str, *, source: str = "registry") -> Registry:
    """Parse the TOML registry; a bad file fails with a message naming what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InternalError(f"{source}: not valid TOML: {exc}") from None
    participants = raw.get("participant", [])
    try:
        return Registry(
            bus_mnemonic=raw.get("bus", {}).get("mnemonic", "SMEVBUS"),
            participants=tuple(Participant(**_lists_to_sets(p)) for p in participants),
        )
    except (ValidationError, TypeError, ValueError) as exc:
        raise InternalError(f"{source}: invalid registry: {exc}") from None


def _lists_to_sets(entry: dict[str, object]) -> dict[str, object]:
    return {k: frozenset(v) if isinstance(v, list) else v for k, v in entry.items()}
