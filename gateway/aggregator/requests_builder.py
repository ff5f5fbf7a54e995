"""Build the request content of one part of a service from the applicant's data.

The catalogue (:mod:`gateway.core.catalogue`) says which applicant value goes into
which request element; this module creates the elements in that order, validates the
result against the message type's XSD, and reports failures in the applicant's
terms: the service, the part, the request element and the applicant JSON path.

:func:`check_catalogue` runs the same build on every service's example applicant, so
a mapping that cannot produce a valid request fails when the catalogue is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lxml import etree

from gateway.core.catalogue import MISSING, Catalogue, Part, Service, lookup
from gateway.core.errors import InternalError, SchemaViolation
from gateway.xml.schema import TypeCatalog, type_catalog


class ApplicantDataInvalid(SchemaViolation):
    """The applicant JSON lacks a field a part needs, or holds a non-scalar there.

    A client error (``schema_violation``, HTTP 422); ``detail["field"]`` is the
    applicant JSON path.
    """


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _child(parent: etree._Element, tag: str) -> etree._Element:
    found = parent.find(tag)
    return found if found is not None else etree.SubElement(parent, tag)


def build_request(
    service: Service,
    part: Part,
    applicant: Mapping[str, Any],
    *,
    types: TypeCatalog | None = None,
) -> etree._Element:
    """The request element of ``part`` for ``applicant``, valid against its XSD.

    Raises :class:`ApplicantDataInvalid` when a required applicant path is missing (or
    not a scalar), and :class:`SchemaViolation` naming service, part, request element
    and applicant path when the built request does not match the XSD.
    """
    catalog = types if types is not None else type_catalog()
    mt = catalog.get(part.message_type)
    root = _assemble(service, part, applicant, f"{{{mt.namespace}}}{mt.request_root}", None)
    try:
        catalog.validate(root, expect="request")
    except SchemaViolation:
        # Rebuilt with a prefix so libxml2's error paths name the elements
        # (with a default namespace they read "/*/*/*").
        prefixed = _assemble(service, part, applicant, root.tag, "t")
        try:
            catalog.validate(prefixed, expect="request")
        except SchemaViolation as exc:
            raise _explain(exc, service, part) from None
        raise  # pragma: no cover - the two trees differ only in prefix
    return root


def _assemble(
    service: Service, part: Part, applicant: Mapping[str, Any], tag: str, prefix: str | None
) -> etree._Element:
    ns = etree.QName(tag).namespace
    root = etree.Element(tag, nsmap={prefix: ns} if prefix else {None: ns})  # type: ignore[dict-item]
    for rule in part.request:
        if rule.source is None:
            value: Any = rule.constant
        else:
            value = lookup(applicant, rule.source)
            if value is MISSING:
                if rule.optional:
                    continue
                raise ApplicantDataInvalid(
                    f"service {service.code}: part {part.id}: applicant field "
                    f"{rule.source!r} is required (for <{rule.element}>)",
                    service=service.code,
                    part=part.id,
                    field=rule.source,
                    element=rule.element,
                )
        text = _text(value)
        if text is None:
            raise ApplicantDataInvalid(
                f"service {service.code}: part {part.id}: applicant field {rule.source!r} "
                f"must be a string or a number, got {type(value).__name__}",
                service=service.code,
                part=part.id,
                field=rule.source,
                element=rule.element,
            )
        node = root
        for name in rule.element.split("/"):
            node = _child(node, f"{{{ns}}}{name}")
        node.text = text
    return root


_PREFIX = re.compile(r"^[^:/]+:")


def _element_path(xpath: str) -> str:
    """``/ns0:Root/ns0:Child/ns0:LastName`` -> ``Child/LastName`` (positions dropped)."""
    steps = [_PREFIX.sub("", s).split("[")[0] for s in xpath.strip("/").split("/")]
    return "/".join(steps[1:])


def _explain(exc: SchemaViolation, service: Service, part: Part) -> SchemaViolation:
    sources = {r.element: r.describe for r in part.request}
    errors = exc.detail.get("errors", [])
    element = _element_path(str(errors[0].get("path") or "")) if errors else ""
    field = sources.get(element)
    first = str(errors[0]["message"]) if errors else exc.message
    where = f" <{element}>" if element else ""
    source = f" (from applicant field {field})" if field else ""
    return SchemaViolation(
        f"service {service.code}: part {part.id}: request{where}{source} does not match "
        f"{part.message_type}: {first}",
        service=service.code,
        part=part.id,
        element=element or None,
        field=field,
        errors=errors,
    )


def check_catalogue(catalogue: Catalogue, *, types: TypeCatalog | None = None) -> None:
    """Build every part's request from its service's example applicant; fail at load.

    Also checks each part's message type has an XSD. Raises :class:`InternalError`
    (a configuration fault) naming the service, the part and what is wrong.
    """
    catalog = types if types is not None else type_catalog()
    for service in catalogue.services:
        for part in service.parts:
            if part.message_type not in catalog:
                raise InternalError(
                    f"service {service.code!r}: part {part.id!r}: message_type: unknown "
                    f"message type {part.message_type!r}; known: {', '.join(catalog.namespaces)}",
                    service=service.code,
                    part=part.id,
                )
            try:
                build_request(service, part, service.example, types=catalog)
            except SchemaViolation as exc:
                raise InternalError(
                    f"service {service.code!r}: request mapping fails for the example "
                    f"applicant: {exc.message}",
                    **{k: v for k, v in exc.detail.items() if k != "errors"},
                ) from None
