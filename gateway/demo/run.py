"""The walking skeleton: a signed birth-record request and its answer, in one process.

PORTAL signs a SendRequest; the router checks it (schema, signature, certificate,
registry) and queues it for ZAGS; the stand-in ZAGS pulls it, answers with a signed
response; the router checks that too and queues it for PORTAL, which pulls it,
verifies it and acks. Every call goes through ``Router.handle`` as SOAP bytes, the
same path the HTTP endpoint uses; transport in memory, journal in SQLite.
"""

from __future__ import annotations

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

from gateway.assembly import open_router
from gateway.client.participant import ParticipantClient
from gateway.config import Settings
from gateway.crypto.keystore import load_signer
from gateway.demo.zags_standin import BIRTH, answer_one
from gateway.router.router import Router
from gateway.xml.namespaces import qname
from gateway.xml.readers import read_response_data

T = TypeVar("T")


@dataclass
class Timeline:
    start: float = field(default_factory=time.perf_counter)
    steps: list[tuple[str, str, float]] = field(default_factory=list)

    async def step(self, who: str, what: str, action: Callable[[], Awaitable[T]]) -> T:
        began = time.perf_counter()
        result = await action()
        self.steps.append((who, what, (time.perf_counter() - began) * 1000))
        return result


def birth_record_request() -> etree._Element:
    root = etree.Element(qname(BIRTH, "BirthRecordRequest"), nsmap={"z": BIRTH})
    child = etree.SubElement(root, qname(BIRTH, "Child"))
    for name, value in (
        ("LastName", "Смирнова"),
        ("FirstName", "Анна"),
        ("MiddleName", "Сергеевна"),
        ("BirthDate", "2019-03-14"),
    ):
        etree.SubElement(child, qname(BIRTH, name)).text = value
    return root


def _client(router: Router, settings: Settings, mnemonic: str) -> ParticipantClient:
    return ParticipantClient(
        signer=load_signer(settings.keys_dir, mnemonic, settings.signature_profile),
        verifier=router.ctx.verifier,
        clock=router.ctx.clock,
        call=router.handle,
        bus_mnemonic=router.ctx.registry.bus_mnemonic,
    )


def _xml(element: etree._Element) -> Syntax:
    text = etree.tostring(element, pretty_print=True, encoding="unicode")
    return Syntax(text, "xml", theme="ansi_dark", word_wrap=True)


async def run_demo(settings: Settings, console: Console) -> int:
    router = await open_router(settings)
    try:
        return await _scenario(router, settings, console)
    finally:
        await router.close()


async def _scenario(router: Router, settings: Settings, console: Console) -> int:
    portal = _client(router, settings, "PORTAL")
    zags = _client(router, settings, "ZAGS")
    timeline = Timeline()
    console.rule("[bold]smevbus demo: ZAGS birth record, signed round trip")
    console.print(
        f"transport [bold]{settings.transport}[/], journal [bold]{settings.database_url}[/], "
        f"signature profile [bold]{settings.signature_profile}[/], keys {settings.keys_dir}"
    )
    content = birth_record_request()
    console.print(Panel(_xml(content), title="PORTAL asks (MessagePrimaryContent)"))

    sent = await timeline.step(
        "PORTAL", "SendRequest (signed)", lambda: portal.send_request(content)
    )
    request_id = sent.message_id
    to = sent.recipient.mnemonic if sent.recipient else "?"
    console.print(f"bus accepted MessageID [bold]{request_id}[/] for {to}")

    answered = await timeline.step(
        "ZAGS", "GetRequest, SendResponse, Ack", lambda: answer_one(zags)
    )
    if answered is None:
        console.print("[red]ZAGS found no request in its queue[/]")
        return 1

    delivery = await timeline.step("PORTAL", "GetResponse (verified)", portal.get_response)
    if delivery is None:
        console.print("[red]no response reached PORTAL[/]")
        return 1
    await timeline.step("PORTAL", "Ack", lambda: portal.ack(delivery.metadata.message_id))
    answer = read_response_data(delivery.response_data)
    if answer.content is None:
        console.print(f"[red]ZAGS did not answer with data: {answer.rejections}[/]")
        return 1
    console.print(
        Panel(
            _xml(answer.content),
            title=f"ZAGS answers (signed by {delivery.metadata.sender.mnemonic}, verified)",
        )
    )

    steps = Table(title="calls (each a signed SOAP exchange through Router.handle)")
    for column in ("who", "what", "ms"):
        steps.add_column(column)
    for who, what, ms in timeline.steps:
        steps.add_row(who, what, f"{ms:.1f}")
    console.print(steps)

    for label, message_id in (
        ("request", str(request_id)),
        ("response", str(delivery.metadata.message_id)),
    ):
        report = await portal.get_status(uuid.UUID(message_id))
        table = Table(title=f"lifecycle of the {label} {message_id} (GetStatus)")
        for column in ("state", "at", "+ms", "reason"):
            table.add_column(column)
        first = report.history[0].timestamp
        for tr in report.history:
            offset = (tr.timestamp - first).total_seconds() * 1000
            table.add_row(tr.state, tr.timestamp.isoformat(), f"{offset:.1f}", tr.reason or "")
        console.print(table)
    ok = report.status == "ACKED"
    console.print("[bold green]round trip complete[/]" if ok else f"[red]ended {report.status}[/]")
    return 0 if ok else 1
