"""The service catalogue: what a portal may order and how it fans out to agencies.

A *service* (``child-birth-benefit``) is a set of *parts*, one bus request each. A part
names its message type, whether it is required, its own deadline, how its request is
built from the applicant's JSON, and which fields of its answer go into the
aggregated result under which names. Parsed from TOML text here (reading the file is
the caller's business); a bad catalogue fails at load with a message naming the
service, the part and the field.

Request mapping (``[service.part.request]``): keys are element paths under the
request root (``"Child/LastName"``), values are one of

* an applicant path, dotted snake_case keys into the applicant JSON
  (``"child.last_name"``): the applicant must provide it;
* the same with a trailing ``?`` (``"child.middle_name?"``): left out when absent;
* a constant, ``{ const = "RESIDENCE" }``.

Elements are created in the order the keys are written, so write them in the XSD's
sequence order. Result mapping (``[service.part.result]``): keys are result field
names, values are element paths inside the answer (``"BirthRecord/ActRecord/Number"``).

Every service carries an ``[service.example]`` applicant that exercises every applicant
path; this module checks it does, and :mod:`gateway.aggregator.requests_builder`
builds every part's request from it and validates it against the type's XSD at load.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.core.errors import InternalError, NotFound

SERVICE_CODE_PATTERN: Final = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
PART_ID_PATTERN: Final = SERVICE_CODE_PATTERN
RESULT_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*$"
APPLICANT_PATH: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
ELEMENT_PATH: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*(/[A-Za-z_][A-Za-z0-9_.\-]*)*$")

MISSING: Final = object()
"""What :func:`lookup` returns for a path the data does not have."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Constant(_Frozen):
    const: str


class FieldRule(_Frozen):
    """One request element: where its text comes from."""

    element: str
    #: Dotted applicant path, or ``None`` for a constant.
    source: str | None = None
    optional: bool = False
    constant: str | None = None

    @property
    def describe(self) -> str:
        if self.source is None:
            return f"constant {self.constant!r}"
        return self.source + ("?" if self.optional else "")


def _element_path(value: str, what: str) -> str:
    if not ELEMENT_PATH.match(value):
        raise ValueError(
            f"{what} {value!r} is not an element path (names separated by '/', "
            "e.g. 'Child/LastName')"
        )
    return value


def _rule(element: str, value: str | Constant) -> FieldRule:
    _element_path(element, "request element")
    if isinstance(value, Constant):
        return FieldRule(element=element, constant=value.const)
    optional = value.endswith("?")
    source = value.removesuffix("?")
    if not APPLICANT_PATH.match(source):
        raise ValueError(
            f"request element {element!r}: {value!r} is not an applicant path (dotted "
            "snake_case keys, e.g. 'child.last_name', optionally ending in '?') "
            'nor a constant ({ const = "..." })'
        )
    return FieldRule(element=element, source=source, optional=optional)


class Part(_Frozen):
    """One bus request of a service."""

    id: str = Field(pattern=PART_ID_PATTERN, max_length=63)
    title: str = ""
    message_type: str = Field(min_length=1)
    required: bool = True
    deadline: timedelta
    request: tuple[FieldRule, ...]
    #: Result field name -> element path inside the answer.
    result: tuple[tuple[str, str], ...] = ()

    @field_validator("deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("deadline must be positive")
        return value

    @field_validator("request", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            rules = []
            for element, source in value.items():
                if isinstance(source, Mapping):
                    source = Constant.model_validate(source)
                elif not isinstance(source, str):
                    raise ValueError(
                        f"request element {element!r}: expected an applicant path or "
                        f"{{ const = ... }}, got {source!r}"
                    )
                rules.append(_rule(str(element), source))
            return tuple(rules)
        return value

    @field_validator("result", mode="before")
    @classmethod
    def _result(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            pairs = []
            for name, path in value.items():
                if not re.match(RESULT_NAME_PATTERN, str(name)):
                    raise ValueError(f"result name {name!r} must be snake_case")
                if not isinstance(path, str):
                    raise ValueError(f"result {name!r}: expected an element path, got {path!r}")
                pairs.append((str(name), _element_path(path, f"result {name!r}")))
            return tuple(pairs)
        return value

    @model_validator(mode="after")
    def _tree(self) -> Part:
        if not self.request:
            raise ValueError("request: map at least one element")
        paths = {r.element for r in self.request}
        for path in paths:
            if any(other.startswith(path + "/") for other in paths):
                raise ValueError(
                    f"request element {path!r} gets a value and has child elements too"
                )
        return self

    @property
    def applicant_paths(self) -> tuple[str, ...]:
        return tuple(r.source for r in self.request if r.source is not None)


class Service(_Frozen):
    code: str = Field(pattern=SERVICE_CODE_PATTERN, max_length=63)
    title: str = Field(min_length=1)
    deadline: timedelta
    parts: tuple[Part, ...] = Field(min_length=1)
    #: A sample applicant: documents the applicant JSON and is used to check the
    #: request mappings against the XSDs at load.
    example: dict[str, Any]

    @model_validator(mode="after")
    def _consistent(self) -> Service:
        if self.deadline <= timedelta(0):
            raise ValueError("deadline must be positive")
        seen: set[str] = set()
        names: dict[str, str] = {}
        for part in self.parts:
            if part.id in seen:
                raise ValueError(f"part {part.id!r} is declared twice")
            seen.add(part.id)
            if part.deadline > self.deadline:
                raise ValueError(
                    f"part {part.id!r}: deadline {part.deadline} is after the service "
                    f"deadline {self.deadline}"
                )
            for name, _ in part.result:
                if name in names:
                    raise ValueError(
                        f"part {part.id!r}: result name {name!r} is already used by "
                        f"part {names[name]!r}"
                    )
                names[name] = part.id
            for rule in part.request:
                if rule.source is not None and lookup(self.example, rule.source) is MISSING:
                    raise ValueError(
                        f"part {part.id!r}: request element {rule.element!r} reads "
                        f"{rule.source!r}, which the example applicant does not have"
                    )
        if not any(p.required for p in self.parts):
            raise ValueError("at least one part must be required")
        return self

    def part(self, part_id: str) -> Part:
        for p in self.parts:
            if p.id == part_id:
                return p
        raise InternalError(f"service {self.code} has no part {part_id!r}")


class Catalogue(_Frozen):
    services: tuple[Service, ...]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        codes = [s.code for s in self.services]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"service {dupes[0]!r} is declared twice")
        return self

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(s.code for s in self.services)

    def get(self, code: str) -> Service:
        """The service ``code``, or a client error listing the known ones."""
        for s in self.services:
            if s.code == code:
                return s
        raise NotFound(
            f"unknown service {code!r}; known services: {', '.join(self.codes) or '(none)'}",
            service=code,
            known=list(self.codes),
        )


def lookup(data: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested mappings, or :data:`MISSING`.

    ``None`` counts as missing (JSON ``null`` means "not given").
    """
    current = data
    for key in path.split("."):
        if not isinstance(current, Mapping) or key not in current:
            return MISSING
        current = current[key]
    return MISSING if current is None else current


def parse_catalogue(
    text: str,
    *,
    known_types: Collection[str] | None = None,
    source: str = "services.toml",
) -> Catalogue:
    """Parse the TOML catalogue; errors name the service, the part and the field.

    ``known_types``, when given, is the set of message types the bus has XSDs for;
    a part naming another type fails here.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InternalError(f"{source}: not valid TOML: {exc}") from None
    extra = set(raw) - {"service"}
    if extra:
        raise InternalError(
            f"{source}: unknown top-level keys {sorted(extra)}; expected [[service]]"
        )
    services = []
    for index, entry in enumerate(raw.get("service", [])):
        name = repr(entry.get("code")) if isinstance(entry.get("code"), str) else f"#{index + 1}"
        data = dict(entry)
        if "part" in data:
            data["parts"] = data.pop("part")
        try:
            service = Service.model_validate(data)
        except ValidationError as exc:
            raise InternalError(
                f"{source}: service {name}: {_describe(exc, data)}", service=entry.get("code")
            ) from None
        if known_types is not None:
            for part in service.parts:
                if part.message_type not in known_types:
                    raise InternalError(
                        f"{source}: service {name}: part {part.id!r}: message_type: unknown "
                        f"message type {part.message_type!r}; known: {', '.join(known_types)}",
                        service=service.code,
                        part=part.id,
                    )
        services.append(service)
    try:
        return Catalogue(services=tuple(services))
    except ValidationError as exc:
        raise InternalError(f"{source}: {_describe(exc, {})}") from None


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> str:
    parts = data.get("parts")
    messages = []
    for err in exc.errors():
        loc: list[str] = []
        items = list(err["loc"])
        if len(items) >= 2 and items[0] == "parts" and isinstance(items[1], int):
            pid = parts[items[1]].get("id") if isinstance(parts, list) else None
            loc.append(f"part {pid!r}" if isinstance(pid, str) else f"part #{items[1] + 1}")
            items = items[2:]
        loc.extend(str(i) for i in items)
        msg = str(err["msg"]).removeprefix("Value error, ")
        messages.append(f"{': '.join(loc)}: {msg}" if loc else msg)
    return "; ".join(messages)
