"""Turn a verified bus response into an aggregation event.

The aggregator reads a provider's ``SenderProvidedResponseData`` (after its signature
and XSD checks) with :func:`gateway.xml.readers.read_response_data` and hands it to
:func:`to_event`, which says what the reply means for the part it answers:

* :class:`Answer` - ``MessagePrimaryContent``: the business element as JSON
  (:func:`answer_data`), which :func:`gateway.core.aggregation.on_answer` stores and
  :func:`~gateway.core.aggregation.pick` reads result fields from by element path;
* :class:`Rejection` - ``RequestRejected``: the first rejection's code and description
  (what :func:`~gateway.core.aggregation.on_rejection` records) and every code;
* :class:`Interim` - ``AsyncProcessingStatus``: the provider is still working. Not a
  reply: it changes no part and never completes a request.

**Answer data.** :func:`answer_data` maps the content element's *children* (the root
element itself is not a key, so catalogue paths start below it:
``"BirthRecord/ActRecord/Number"`` in ``<BirthRecordResponse>``):

* keys are element local names (namespaces dropped);
* an element without child elements and attributes is its text, verbatim (an empty
  element is ``""``); values are always strings, never typed by the schema;
* an element with children is an object; a name occurring more than once among the
  siblings is a list of the values in document order, a name occurring once is the
  value itself (so a ``maxOccurs="unbounded"`` element seen once is *not* a list:
  :func:`~gateway.core.aggregation.pick` maps over lists, so paths work either way,
  but the result value is a scalar for one record and a list for several);
* attributes are keys ``"@name"`` (local name, sorted; of two with one local name
  the unqualified one, else the lower namespace URI, wins), before the children; an
  element with attributes keeps its text under ``"#text"`` when it has any; text
  mixed between child elements (not whitespace) is kept under ``"#text"`` too;
* comments and processing instructions are ignored.

The mapping is deterministic: the same element (or a canonically equivalent one)
always gives equal data, and the data is plain JSON.

**RecordNotFound.** The ZAGS, MVD residence and FNS response XSDs answer "no such
record" with a ``<RecordNotFound>`` text element in place of the records. It is an
*answer*, not a rejection (the agency processed the request): :class:`Answer` with
``data == {"RecordNotFound": "<the agency's text>"}`` and ``not_found=True``. Through
:func:`~gateway.core.aggregation.on_answer` the part is ``ANSWERED``; the catalogue
maps ``RecordNotFound`` to a result field (``birth_not_found``), so the result says
which record was missing while the record fields are ``None``. A policy that treats
a missing required record as a failure can key on ``not_found``. The passport
validity type has no ``RecordNotFound``: its ``<Status>NOT_FOUND</Status>`` is an
ordinary answer value and ``not_found`` stays ``False``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from lxml import etree

from gateway.core.aggregation import Effect, Outcome, ServiceRequestState, on_answer, on_rejection
from gateway.core.errors import InvalidContent
from gateway.xml.messages import ResponseData
from gateway.xml.text import text_of

__all__ = [
    "NOT_FOUND_ELEMENT",
    "TEXT_KEY",
    "Answer",
    "Event",
    "Interim",
    "Rejection",
    "answer_data",
    "apply_event",
    "to_event",
]

NOT_FOUND_ELEMENT: Final = "RecordNotFound"
"""Local name of the "no such record" answer in the shipped response XSDs."""
TEXT_KEY: Final = "#text"
"""Key of an element's text when the element also has attributes or children."""


@dataclass(frozen=True)
class Answer:
    """The provider answered with business content."""

    kind: ClassVar[Literal["answer"]] = "answer"
    #: MessageID of the response.
    message_id: uuid.UUID
    #: Namespace of the content root (the message type it claims to answer).
    message_type: str
    data: dict[str, Any] = field(hash=False)
    #: The answer is ``<RecordNotFound>`` (``data == {"RecordNotFound": text}``).
    not_found: bool = False


@dataclass(frozen=True)
class Rejection:
    """The provider declined the request (``RequestRejected``, one or more)."""

    kind: ClassVar[Literal["rejection"]] = "rejection"
    message_id: uuid.UUID
    #: The first rejection's code and description (what the part records).
    code: str
    description: str
    #: Every rejection code, in document order (``codes[0] == code``).
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Interim:
    """An ``AsyncProcessingStatus``: still processing; changes nothing."""

    kind: ClassVar[Literal["interim"]] = "interim"
    message_id: uuid.UUID
    category: str
    details: str | None = None


Event = Answer | Rejection | Interim


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _attr_key(name: Any) -> tuple[str, str]:
    q = etree.QName(name)
    return q.localname, q.namespace or ""


def _value(el: etree._Element) -> Any:
    children = [c for c in el if isinstance(c.tag, str)]
    attributes: dict[str, str] = {}
    # Sorted by (local name, namespace), first wins: an unqualified attribute beats a
    # namespaced one of the same local name, whatever the document order.
    for key, val in sorted((_attr_key(k), str(v)) for k, v in el.attrib.items()):
        attributes.setdefault(f"@{key[0]}", val)
    if not children and not attributes:
        return text_of(el)
    value: dict[str, Any] = dict(attributes)
    if children:
        text = "".join([el.text or "", *(c.tail or "" for c in el)]).strip()
    else:
        text = text_of(el)
    if text:
        value[TEXT_KEY] = text
    for child in children:
        name = _local(child)
        item = _value(child)  # a str or a dict, never a list
        if name not in value:
            value[name] = item
        elif isinstance(value[name], list):
            value[name].append(item)
        else:
            value[name] = [value[name], item]
    return value


def answer_data(content: etree._Element) -> dict[str, Any]:
    """The business content element as JSON (see the module docstring for the rules)."""
    value = _value(content)
    if isinstance(value, dict):
        return value
    return {TEXT_KEY: value} if value else {}


def _not_found(data: dict[str, Any]) -> bool:
    return list(data) == [NOT_FOUND_ELEMENT] and isinstance(data[NOT_FOUND_ELEMENT], str)


def to_event(response: ResponseData) -> Event:
    """What a verified response means for the part it answers."""
    if response.rejections:
        first = response.rejections[0]
        return Rejection(
            message_id=response.message_id,
            code=first.code,
            description=first.description,
            codes=tuple(r.code for r in response.rejections),
        )
    if response.status is not None:
        return Interim(
            message_id=response.message_id,
            category=response.status.category,
            details=response.status.details,
        )
    if response.content is None:
        # read_response_data guarantees exactly one kind; a hand-made ResponseData may not.
        raise InvalidContent(
            "response holds none of MessagePrimaryContent, RequestRejected or "
            "AsyncProcessingStatus",
            reason="structure",
        )
    data = answer_data(response.content)
    return Answer(
        message_id=response.message_id,
        message_type=etree.QName(response.content).namespace or "",
        data=data,
        not_found=_not_found(data),
    )


def apply_event(state: ServiceRequestState, part_id: str, event: Event, at: datetime) -> Outcome:
    """Feed ``event`` for ``part_id`` into the scatter-gather state.

    An :class:`Interim` changes nothing (``NO_CHANGE``; ``LATE`` once the request is
    final, so late status reports are journaled like late replies).
    """
    if isinstance(event, Answer):
        return on_answer(state, part_id, event.data, at)
    if isinstance(event, Rejection):
        return on_rejection(state, part_id, event.code, event.description, at)
    effect = Effect.LATE if state.final else Effect.NO_CHANGE
    return Outcome(state, effect, became_final=False)
