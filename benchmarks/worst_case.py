"""The worst document of each hostile shape, at the size limit, against a real gateway.

Starts ``smevbus serve`` as its own process on the embedded default (memory transport,
SQLite journal, a fresh dev PKI), then for each shape builds the worst SendRequest it
can within ``SMEVBUS_MAX_MESSAGE_BYTES`` (5 MB), posts it raw to ``/ws`` and prints:

* its size and the fault code the gateway answered (with the start of its message);
* the wall time of the POST and the gateway's CPU time for it (user + system of the
  server process via psutil, all threads, less the /health polls' own share measured
  alone; the kernel counts in 10 ms ticks, so each shape is posted ``--repeat`` times and
  averaged);
* the latency of ``GET /health`` (p50, p99, max, and how many) polled every 10 ms by a
  concurrent client while the document is handled: whether the gateway keeps answering.

First the baseline: a normal signed SendRequest (a few KB) round trip and ``/health``
with nothing else going on. Targets (issue 11): each refusal <= 100 ms of gateway CPU,
``/health`` p99 <= 50 ms meanwhile. The figures are printed, never asserted.

Run: .venv/bin/python benchmarks/worst_case.py [--repeat 3] [--only namespaces,text]
     [--limit-bytes 5242880] [--timeout 600]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import cpu_seconds, percentile  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.core.clock import MessageIdSource, SystemClock  # noqa: E402
from gateway.crypto.devpki import init_dev_pki  # noqa: E402
from gateway.crypto.envelope import sign_element  # noqa: E402
from gateway.crypto.keystore import load_signer  # noqa: E402
from gateway.crypto.xmldsig import XmlSigner  # noqa: E402
from gateway.testing.processes import GatewayProcess  # noqa: E402
from gateway.xml import messages  # noqa: E402
from gateway.xml.parse import XmlLimits, parse_secure  # noqa: E402
from gateway.xml.soap import parse_fault, wrap_envelope  # noqa: E402

CONTENT = ROOT / "tests" / "data" / "content" / "zags-birth-record.request.xml"
PARTICIPANTS = ("PORTAL", "ZAGS", "MVD_MIGR", "FNS", "SMEVBUS")
HEALTH_EVERY_S = 0.01
#: Room left under the limit for what a shape's filler does not account for exactly.
MARGIN = 2048
#: What a signature adds to a document once made.
SIGNATURE = 2048

ENVELOPE = '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
SIGNED = '<smev:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER"'
BUSINESS = '<BirthRecordRequest xmlns="urn://smevbus/types/zags/birth-record/1.0"'
SIGNED_INFO_END = "</ds:SignedInfo>"


class Requests:
    """Builds SendRequests from PORTAL: each with a fresh MessageID, signed or not."""

    def __init__(self, signer: XmlSigner, limit: int, limits: XmlLimits) -> None:
        self.signer = signer
        self.limit = limit
        self.limits = limits
        self.ids = MessageIdSource(SystemClock())
        #: Elements a shape may add and stay under the element limit.
        self.room = limits.max_elements - 200

    def text(self, *, signed: bool) -> str:
        """A normal SendRequest as text: the template the shapes are cut into."""
        content = etree.fromstring(CONTENT.read_bytes())
        body = messages.build_send_request(self.ids.new(), content)
        if signed:
            sign_element(body, self.signer)
        return wrap_envelope(body).decode("utf-8")

    def sign(self, document: str) -> str:
        """``document`` (an unsigned SOAP SendRequest, any size) signed by PORTAL."""
        root = etree.fromstring(document.encode("utf-8"), etree.XMLParser(huge_tree=True))
        body = root[1][0]
        sign_element(body, self.signer)
        return etree.tostring(root, encoding="unicode")

    def budget(self, document: str) -> int:
        """Bytes a filler may add to ``document`` and stay under the limit."""
        return self.limit - len(document.encode("utf-8")) - MARGIN

    def padded(self, document: str, content: str, spare: int = 0) -> str:
        """``content`` put into the business element, then text up to the size limit
        (less ``spare``), in runs the parser allows."""
        document = insert(document, BUSINESS + ">", content)
        run = self.limits.max_text_bytes // 2
        budget = self.budget(document) - spare
        pads = "".join(
            f"<pad>{'p' * min(run, budget - at - 11)}</pad>"
            for at in range(0, budget - 11, run + 11)
        )
        return insert(document, BUSINESS + ">", pads)


def insert(document: str, after: str, what: str) -> str:
    """``what`` right after the first ``after`` in ``document``."""
    at = document.index(after) + len(after)
    return document[:at] + what + document[at:]


def fill(budget: int, unit: Callable[[int], str]) -> str:
    """``unit(0) + unit(1) + ...`` up to ``budget`` bytes (ASCII units)."""
    parts: list[str] = []
    size = 0
    for i in itertools.count():
        part = unit(i)
        if size + len(part) > budget:
            break
        parts.append(part)
        size += len(part)
    return "".join(parts)


# --- the shapes ------------------------------------------------------------------------
#
# Over a limit, the worst document is the one that makes the gateway read the most
# before the limit is passed; under the limits (the "-under" shapes and the signed
# ones), the most elements allowed, padded to the size limit with text in runs the
# parser allows, so that every later step (XSD, signature) runs on it in full.


def namespaces(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, ENVELOPE, fill(r.budget(doc), lambda i: f' xmlns:p{i}="urn:n{i}"'))


def namespaces_signed(r: Requests) -> str:
    doc = r.text(signed=False)
    decls = fill(r.budget(doc) - SIGNATURE, lambda i: f' xmlns:p{i}="urn:n{i}"')
    return r.sign(insert(doc, SIGNED, decls))


def namespaces_spread(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, BUSINESS + ">", fill(r.budget(doc), lambda i: f'<x xmlns:p="urn:n{i}"/>'))


def attributes(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, BUSINESS, fill(r.budget(doc), lambda i: f' a{i}=""'))


def attribute_value(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, BUSINESS, ' a="' + "x" * (r.budget(doc) - 5) + '"')


def depth(r: Requests) -> str:
    doc = r.text(signed=False)
    levels = r.budget(doc) // len("<a></a>")
    return insert(doc, BUSINESS + ">", "<a>" * levels + "</a>" * levels)


def text(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, "<LastName>", "x" * r.budget(doc))


def elements(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, BUSINESS + ">", "<a/>" * (r.budget(doc) // 4))


def elements_under(r: Requests) -> str:
    return r.padded(r.text(signed=False), "<a/>" * r.room)


def text_nodes(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, "<LastName>", "x<!---->" * (r.budget(doc) // 8))


def processing_instructions(r: Requests) -> str:
    doc = r.text(signed=False)
    return insert(doc, "<LastName>", "x<?p?>" * (r.budget(doc) // 6))


def references(r: Requests) -> str:
    """As many (bogus) References in SignedInfo as the element limit allows."""
    doc = r.text(signed=True)
    reference = (
        '<ds:Reference URI="#SIGNED_BY_CONSUMER"><ds:Transforms/><ds:DigestMethod '
        'Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>'
        "AAAA</ds:DigestValue></ds:Reference>"
    )
    at = doc.index(SIGNED_INFO_END)
    return r.padded(doc[:at] + reference * (r.room // 4) + doc[at:], "")


def ids(r: Requests) -> str:
    """The signed element's Id on as many other elements as allowed: a wrapping try."""
    doc = r.text(signed=False)
    return r.sign(r.padded(doc, '<x Id="SIGNED_BY_CONSUMER"/>' * r.room, SIGNATURE))


def _big_content(r: Requests) -> str:
    """A signed request with as many content elements as allowed, filling the size."""
    doc = r.text(signed=False)
    items = r.room
    size = (r.budget(doc) - SIGNATURE) // items - len("<Note></Note>")
    return r.sign(insert(doc, BUSINESS + ">", f"<Note>{'7' * size}</Note>" * items))


def signed_large(r: Requests) -> str:
    return _big_content(r)


def signed_tampered(r: Requests) -> str:
    doc = _big_content(r)
    at = doc.rindex("7</Note>")
    return doc[:at] + "8" + doc[at + 1 :]


def signed_forged(r: Requests) -> str:
    """A trusted certificate, but a SignatureValue its key never made."""
    doc = _big_content(r)
    start = doc.index("<ds:SignatureValue>") + len("<ds:SignatureValue>")
    return doc[:start] + "A" * 8 + doc[start + 8 :]


def _attribute_content(r: Requests) -> str:
    """A signed request whose content elements carry as many attributes as allowed (on
    each, and in the document), padded to the size limit: the most names and values
    the signature's digest must write."""
    doc = r.text(signed=False)
    attrs = "".join(f' a{i}=""' for i in range(r.limits.max_attributes))
    count = (r.limits.max_attributes_in_document - 50) // r.limits.max_attributes
    return r.sign(r.padded(doc, f"<Note{attrs}/>" * count, SIGNATURE))


def signed_attributes_tampered(r: Requests) -> str:
    doc = _attribute_content(r)
    at = doc.rindex(' a0=""') + len(' a0="')
    return doc[:at] + "8" + doc[at:]


@dataclass(frozen=True)
class Shape:
    name: str
    what: str
    build: Callable[[Requests], str]


SHAPES = (
    Shape("namespaces", "xmlns:pK on soap:Envelope, unsigned", namespaces),
    Shape("namespaces-signed", "xmlns:pK on the signed element, signed", namespaces_signed),
    Shape("namespaces-spread", "<x xmlns:p=...> each, unsigned", namespaces_spread),
    Shape("attributes", "aK='' on one element", attributes),
    Shape("attribute-value", "one 5 MB attribute value", attribute_value),
    Shape("depth", "<a> nested to the size limit", depth),
    Shape("text", "one 5 MB text node", text),
    Shape("elements", "<a/> repeated", elements),
    Shape("elements-under", "<a/> as many as allowed, padded", elements_under),
    Shape("text-nodes", "x<!----> repeated in one field", text_nodes),
    Shape("pis", "x<?p?> repeated in one field", processing_instructions),
    Shape("references", "ds:Reference repeated in SignedInfo", references),
    Shape("ids", "Id=<the signed Id> repeated, signed", ids),
    Shape("signed-large", "content elements as many as allowed, signed", signed_large),
    Shape("signed-tampered", "the same, changed after signing", signed_tampered),
    Shape("signed-forged", "the same, SignatureValue changed", signed_forged),
    Shape(
        "signed-attrs-tampered",
        "content elements with all the attributes allowed, signed, changed",
        signed_attributes_tampered,
    ),
)


# --- measuring -------------------------------------------------------------------------


@dataclass
class Health:
    latencies_ms: list[float]

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


async def poll_health(client: httpx.AsyncClient, url: str, done: asyncio.Event) -> Health:
    latencies: list[float] = []
    while not done.is_set():
        began = time.perf_counter()
        response = await client.get(url)
        latencies.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
        await asyncio.sleep(HEALTH_EVERY_S)
    return Health(latencies)


def fault(reply: bytes) -> str:
    """``code: the start of the description`` of a SOAP Fault, or ``accepted``."""
    found = parse_fault(parse_secure(reply, max_bytes=64 * 1024 * 1024))
    if found is None:
        return "accepted"
    return f"{found.code}: {(found.description or '')[:60]}"


@dataclass
class Run:
    wall_ms: float
    cpu_ms: float
    answer: str
    health: Health


async def post(base: str, pid: int, raw: bytes, poll_cpu_ms: float, wait_s: float) -> Run:
    """POST ``raw`` to /ws while /health is polled; the gateway CPU less the polls'."""
    async with (
        httpx.AsyncClient(timeout=wait_s) as client,
        httpx.AsyncClient(timeout=wait_s) as poller,
    ):
        done = asyncio.Event()
        polling = asyncio.create_task(poll_health(poller, f"{base}/health", done))
        await asyncio.sleep(0.05)  # the poller's connection is open and warm
        cpu, began = cpu_seconds(pid), time.perf_counter()
        try:
            response = await client.post(
                f"{base}/ws", content=raw, headers={"Content-Type": "text/xml; charset=utf-8"}
            )
            answer = fault(response.content)
        except httpx.TimeoutException:
            answer = f"no answer in {wait_s:.0f} s"
        wall = (time.perf_counter() - began) * 1000
        used = (cpu_seconds(pid) - cpu) * 1000
        done.set()
        try:
            health = await polling
        except httpx.TimeoutException:
            health = Health([wait_s * 1000])
    polls = len(health.latencies_ms)
    return Run(wall, max(0.0, used - polls * poll_cpu_ms), answer, health)


async def baseline(base: str, pid: int, requests: Requests, n: int) -> tuple[float, float]:
    """/health alone: gateway CPU per poll (ms) and p50 (ms); then the signed round trip."""
    async with httpx.AsyncClient(timeout=60) as client:
        await client.get(f"{base}/health")
        latencies: list[float] = []
        cpu = cpu_seconds(pid)
        for _ in range(200):
            began = time.perf_counter()
            await client.get(f"{base}/health")
            latencies.append((time.perf_counter() - began) * 1000)
        poll_cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / len(latencies)
        health_p50 = statistics.median(latencies)

        round_trips: list[float] = []
        answers: set[str] = set()
        cpu = cpu_seconds(pid)
        for _ in range(n):
            raw = requests.text(signed=True).encode("utf-8")
            began = time.perf_counter()
            response = await client.post(
                f"{base}/ws", content=raw, headers={"Content-Type": "text/xml; charset=utf-8"}
            )
            round_trips.append((time.perf_counter() - began) * 1000)
            answers.add(fault(response.content))
        cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / n
    print(
        f"baseline: /health alone p50 {health_p50:.2f} ms, {poll_cpu_ms:.2f} ms gateway CPU "
        f"per poll; normal signed SendRequest ({len(raw)} bytes, {', '.join(answers)}) "
        f"x{n}: round trip p50 {statistics.median(round_trips):.2f} ms, "
        f"gateway CPU {cpu_ms:.2f} ms each"
    )
    return poll_cpu_ms, health_p50


async def measure(
    gateway: GatewayProcess, requests: Requests, shapes: list[Shape], repeat: int, wait_s: float
) -> None:
    poll_cpu_ms, _ = await baseline(gateway.base_url, _pid(gateway), requests, 50)
    header = (
        f"{'shape':<22}{'bytes':>9}  {'wall ms':>10}{'CPU ms':>10}"
        f"{'health p50':>11}{'p99':>10}{'max':>10}{'polls':>6}  answer"
    )
    print(header)
    print("-" * len(header))
    for shape in shapes:
        runs: list[Run] = []
        size = 0
        for _ in range(repeat):
            raw = shape.build(requests).encode("utf-8")
            size = len(raw)
            run = await post(gateway.base_url, _pid(gateway), raw, poll_cpu_ms, wait_s)
            runs.append(run)
            if run.answer.startswith("no answer"):  # still busy with it: start afresh
                gateway.stop()
                gateway.start()
                break
        health = Health([lat for run in runs for lat in run.health.latencies_ms])
        print(
            f"{shape.name:<22}{size:>9}  {statistics.mean(r.wall_ms for r in runs):>10.1f}"
            f"{statistics.mean(r.cpu_ms for r in runs):>10.1f}{health.pct(50):>11.1f}"
            f"{health.pct(99):>10.1f}{max(health.latencies_ms):>10.1f}"
            f"{len(health.latencies_ms):>6}  {runs[-1].answer}",
            flush=True,
        )
    print("-" * len(header))
    print("targets: CPU <= 100 ms per refusal, /health p99 <= 50 ms during it")


def _pid(gateway: GatewayProcess) -> int:
    assert gateway.process is not None
    return gateway.process.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="posts per shape (averaged)")
    parser.add_argument("--only", default="", help="comma-separated shape names")
    parser.add_argument("--limit-bytes", type=int, default=5 * 1024 * 1024)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for one answer")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    shapes = [s for s in SHAPES if not only or s.name in only]
    if only - {s.name for s in shapes}:
        parser.error(f"unknown shapes {sorted(only - {s.name for s in shapes})}")

    work = Path(tempfile.mkdtemp(prefix="smevbus-worst-case-"))
    keys = work / "keys"
    init_dev_pki(keys, {m: m for m in PARTICIPANTS}, clock=SystemClock())
    settings = Settings()
    limits = XmlLimits(
        max_elements=settings.xml_max_elements,
        max_attributes=settings.xml_max_attributes,
        max_attributes_in_document=settings.xml_max_attributes_in_document,
        max_text_bytes=settings.xml_max_text_bytes,
    )
    requests = Requests(load_signer(keys, "PORTAL"), args.limit_bytes, limits)
    gateway = GatewayProcess(
        env={
            "SMEVBUS_TRANSPORT": "memory",
            "SMEVBUS_DATABASE_URL": f"sqlite:///{work / 'journal.db'}",
            "SMEVBUS_KEYS_DIR": str(keys),
            "SMEVBUS_MAX_MESSAGE_BYTES": str(args.limit_bytes),
            "SMEVBUS_LOG_LEVEL": "WARNING",
        },
        log_path=work / "gateway.log",
    )
    gateway.start()
    try:
        print(f"gateway pid {_pid(gateway)}, size limit {args.limit_bytes} bytes", flush=True)
        asyncio.run(measure(gateway, requests, shapes, args.repeat, args.timeout))
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
