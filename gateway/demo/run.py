"""``smevbus demo``: a portal asks agencies, in one process, on the embedded default.

PORTAL signs two SendRequests: the birth record of a child (ZAGS) and the validity of
the mother's passport (MVD migration). The router checks each (schema, signature,
certificate, registry) and queues it; the real ZAGS and MVD adapters pull them, ask
the mock agencies over HTTP (ZAGS over SOAP with zeep, MVD with XML over HTTP), and
answer with responses signed by the agencies; the router checks those too and queues
them for PORTAL, which pulls them, verifies them and acks. Every bus call goes through
``Router.handle`` as SOAP bytes, the same path as the HTTP endpoint; the transport is in
memory and the journal SQLite.

Then the portal submits the service request ``child-birth-benefit``: the aggregator
fans it out to ZAGS, MVD and FNS, correlates the three answers and prints the result.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from lxml import etree
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from gateway.aggregator import Aggregator
from gateway.bus import Bus, open_bus
from gateway.client.participant import ParticipantClient
from gateway.config import Settings
from gateway.crypto.certificates import common_name
from gateway.crypto.keystore import load_signer
from gateway.demo.agencies import DemoAdapters, mock_agencies
from gateway.store.service_requests import ServiceRequestRecord
from gateway.xml.namespaces import qname
from gateway.xml.readers import read_response_data

T = TypeVar("T")

BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
PASSPORT = "urn://smevbus/types/mvd/passport-validity/1.0"


@dataclass
class Timeline:
    steps: list[tuple[str, str, float]] = field(default_factory=list)

    async def step(self, who: str, what: str, action: Callable[[], Awaitable[T]]) -> T:
        began = time.perf_counter()
        result = await action()
        self.steps.append((who, what, (time.perf_counter() - began) * 1000))
        return result


def _element(namespace: str, root: str, tree: dict[str, dict[str, str]]) -> etree._Element:
    element = etree.Element(qname(namespace, root), nsmap={"t": namespace})
    for group, fields in tree.items():
        holder = etree.SubElement(element, qname(namespace, group))
        for name, value in fields.items():
            etree.SubElement(holder, qname(namespace, name)).text = value
    return element


def birth_record_request() -> etree._Element:
    child = {
        "LastName": "Смирнова",
        "FirstName": "Анна",
        "MiddleName": "Сергеевна",
        "BirthDate": "2019-03-14",
    }
    return _element(BIRTH, "BirthRecordRequest", {"Child": child})


def passport_validity_request() -> etree._Element:
    holder = {
        "LastName": "Смирнова",
        "FirstName": "Елена",
        "MiddleName": "Викторовна",
        "BirthDate": "1991-07-02",
    }
    passport = {"Series": "7011", "Number": "123456"}
    return _element(PASSPORT, "PassportValidityRequest", {"Passport": passport, "Holder": holder})


def _client(bus: Bus, settings: Settings, mnemonic: str) -> ParticipantClient:
    return ParticipantClient(
        signer=load_signer(settings.keys_dir, mnemonic, settings.signature_profile),
        verifier=bus.ctx.verifier,
        clock=bus.clock,
        call=bus.handle,
        bus_mnemonic=bus.registry.bus_mnemonic,
    )


def _xml(element: etree._Element) -> Syntax:
    text = etree.tostring(element, pretty_print=True, encoding="unicode")
    return Syntax(text, "xml", theme="ansi_dark", word_wrap=True)


async def run_demo(settings: Settings, console: Console) -> int:
    # PORTAL pulls its own replies first: the aggregator takes them over for part two.
    bus = await open_bus(settings, portals=())
    try:
        await bus.start()
        with mock_agencies() as agencies:
            clients = {m: _client(bus, settings, m) for m in ("PORTAL", "ZAGS", "MVD_MIGR", "FNS")}
            adapters = DemoAdapters(agencies, clients)
            try:
                console.rule("[bold]smevbus demo: a portal asks ZAGS and MVD, signed round trips")
                console.print(
                    f"transport [bold]{settings.transport}[/], journal "
                    f"[bold]{settings.database_url}[/], signature profile "
                    f"[bold]{settings.signature_profile}[/], keys {settings.keys_dir}"
                )
                for agency in agencies.values():
                    console.print(f"mock agency: {agency.name} at {agency.url}")
                code = await _scenario(clients["PORTAL"], adapters, console)
                if code == 0:
                    await bus.serve_portal("PORTAL")
                    code = await _service_request(bus.aggregator, adapters, console)
                return code
            finally:
                await adapters.aclose()
    finally:
        await bus.close()


async def _scenario(portal: ParticipantClient, adapters: DemoAdapters, console: Console) -> int:
    timeline = Timeline()
    asks = {"zags": birth_record_request(), "mvd_migration": passport_validity_request()}
    runners = {name: adapters.runners[name] for name in asks}
    sent: dict[uuid.UUID, str] = {}
    for name, content in asks.items():
        console.print(Panel(_xml(content), title=f"PORTAL asks ({name})"))
        meta = await timeline.step(
            "PORTAL",
            f"SendRequest {etree.QName(content).localname}",
            functools.partial(portal.send_request, content),
        )
        sent[meta.message_id] = name
        to = meta.recipient.mnemonic if meta.recipient else "?"
        console.print(f"bus accepted MessageID [bold]{meta.message_id}[/] for {to}")

    for name, runner in runners.items():
        outcome = await timeline.step(
            common_name(runner.client.signer.certificate) or name,
            f"{name} adapter: GetRequest, ask the agency, SendResponse, Ack",
            runner.run_once,
        )
        if outcome is None or not outcome.acked:
            console.print(f"[red]{name} adapter did not answer: {outcome}[/]")
            return 1

    answered: list[uuid.UUID] = []
    while len(answered) < len(sent):
        delivery = await timeline.step("PORTAL", "GetResponse (verified)", portal.get_response)
        if delivery is None:
            console.print("[red]a response did not reach PORTAL[/]")
            return 1
        await timeline.step(
            "PORTAL", "Ack", functools.partial(portal.ack, delivery.metadata.message_id)
        )
        answer = read_response_data(delivery.response_data)
        who = delivery.metadata.sender.mnemonic
        if answer.content is None:
            console.print(f"[red]{who} did not answer with data: {answer.rejections}[/]")
            return 1
        console.print(Panel(_xml(answer.content), title=f"{who} answers (signed, verified)"))
        answered.append(delivery.original_message_id)

    steps = Table(title="calls (each a signed SOAP exchange through Router.handle)")
    for column in ("who", "what", "ms"):
        steps.add_column(column)
    for who, what, ms in timeline.steps:
        steps.add_row(who, what, f"{ms:.1f}")
    console.print(steps)

    # GetStatus: PORTAL takes its status notices, one per change of a 1.1 code.
    notices: dict[uuid.UUID, list[str]] = {request_id: [] for request_id in answered}
    while (notice := await portal.get_status()) is not None:
        notices.setdefault(notice.original_message_id, []).append(
            f"{notice.category} ({notice.details})"
        )
    ok = True
    for request_id in answered:
        table = Table(title=f"status of request {request_id} ({sent[request_id]}, GetStatus)")
        table.add_column("InteractionStatusType (journal state)")
        for line in notices[request_id]:
            table.add_row(line)
        console.print(table)
        ok = ok and any(line.startswith("responseIsDelivered") for line in notices[request_id])
    console.print("[bold green]round trip complete[/]" if ok else "[red]round trip incomplete[/]")
    return 0 if ok else 1


APPLICANT = {
    "child": {
        "last_name": "Смирнова",
        "first_name": "Анна",
        "middle_name": "Сергеевна",
        "birth_date": "2019-03-14",
    },
    "parent": {
        "last_name": "Смирнова",
        "first_name": "Елена",
        "middle_name": "Викторовна",
        "birth_date": "1991-07-02",
        "passport": {"series": "7011", "number": "123456"},
    },
}


async def _replies_applied(
    aggregator: Aggregator, id: str, within: float = 2.0
) -> ServiceRequestRecord:
    """The request once every part that was answered is applied, or as it is after
    ``within`` seconds: the replies reach the aggregator by push, on their own."""
    deadline = time.monotonic() + within
    while True:
        record = await aggregator.get(id)
        if record.state.final or time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.01)


async def _service_request(aggregator: Aggregator, adapters: DemoAdapters, console: Console) -> int:
    """The portal's service request: one submission, three agencies, one result."""
    console.rule("[bold]service request child-birth-benefit: fan-out to ZAGS, MVD and FNS")
    record, _ = await aggregator.submit(
        service="child-birth-benefit", applicant=APPLICANT, participant="PORTAL"
    )
    console.print(f"submitted service request [bold]{record.id}[/]; parts sent:")
    for part in record.state.parts:
        console.print(f"  {part.id:<22} {part.message_type}  MessageID {part.message_id}")
    announced: set[str] = set()
    for _round in range(10):  # each round: every agency answers what it has
        for runner in adapters.runners.values():
            await runner.run_once()
        record = await _replies_applied(aggregator, str(record.id))
        for part in record.state.parts:
            if part.replied_at is not None and part.id not in announced:
                announced.add(part.id)
                console.print(f"  part {part.id} arrived: {part.status}")
        if record.state.final:
            break
    state = record.state
    parts = Table(title=f"service request {state.id}: {state.status} ({state.completed_by})")
    for column in ("part", "required", "status", "message id"):
        parts.add_column(column)
    for part in state.parts:
        parts.add_row(part.id, str(part.required), str(part.status), str(part.message_id))
    console.print(parts)
    result = Table(title="aggregated result")
    result.add_column("field")
    result.add_column("value")
    for name, value in (state.result or {}).items():
        result.add_row(name, str(value))
    console.print(result)
    ok = state.status == "COMPLETED"
    console.print(
        "[bold green]service request complete[/]" if ok else f"[red]ended {state.status}[/]"
    )
    return 0 if ok else 1
