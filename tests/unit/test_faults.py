import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import adapters
import gateway
from gateway.core import errors
from gateway.core.errors import Origin, SmevbusError, SoapFaultCode, error_class, error_classes
from gateway.core.faults import fault_of, problem_json

README = Path(__file__).resolve().parents[2] / "README.md"

DESIGN_CODES = {
    "invalid_content",
    "schema_violation",
    "signature_invalid",
    "certificate_untrusted",
    "certificate_expired",
    "sender_not_registered",
    "access_denied",
    "message_already_sent",
    "destination_unknown",
    "message_too_large",
    "quota_exceeded",
    "not_found",
    "internal",
}

#: What clients see on the wire: a change here breaks them.
STABLE = {
    "invalid_content": (400, "soap:Client"),
    "schema_violation": (422, "soap:Client"),
    "signature_invalid": (401, "soap:Client"),
    "certificate_untrusted": (401, "soap:Client"),
    "certificate_expired": (401, "soap:Client"),
    "sender_not_registered": (403, "soap:Client"),
    "access_denied": (403, "soap:Client"),
    "message_already_sent": (409, "soap:Client"),
    "stale_message_id": (409, "soap:Client"),
    "replayed_request": (409, "soap:Client"),
    "destination_unknown": (404, "soap:Client"),
    "message_too_large": (413, "soap:Client"),
    "unsupported_media_type": (415, "soap:Client"),
    "idempotency_key_reused": (422, "soap:Client"),
    "quota_exceeded": (429, "soap:Client"),
    "not_found": (404, "soap:Client"),
    "provider_failure": (502, "soap:Server"),
    "internal": (500, "soap:Server"),
    "unauthenticated": (401, "soap:Client"),
    "conflict": (409, "soap:Client"),
}


def _every_error_class() -> list[type[SmevbusError]]:
    """Every SmevbusError subclass defined anywhere in gateway and adapters."""
    for package in (gateway, adapters):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" in module.name or module.name.endswith("__main__"):
                continue
            importlib.import_module(module.name)
    found: list[type[SmevbusError]] = []
    todo = [SmevbusError]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith(("gateway.", "adapters.")):  # not tests' own
                found.append(sub)
    return found


def test_every_design_code_has_an_error_class() -> None:
    assert {e.code for e in error_classes()} >= DESIGN_CODES


def test_codes_keep_their_status_and_soap_faultcode() -> None:
    seen = {e.code: (e.http_status, str(e.soap_faultcode)) for e in error_classes()}
    assert seen == STABLE


def test_codes_are_unique_snake_case_and_looked_up_by_code() -> None:
    codes = [e.code for e in error_classes()]
    assert len(codes) == len(set(codes))
    for cls in error_classes():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.code)
        assert error_class(cls.code) is cls
    assert error_class("no_such_code") is None


def test_every_code_is_declared_in_the_error_module() -> None:
    """Codes have one home: a class elsewhere may refine a code, never introduce one."""
    for cls in _every_error_class():
        registered = error_class(cls.code)
        assert registered is not None, f"{cls.__qualname__} has unregistered {cls.code!r}"
        assert issubclass(cls, registered)
        assert registered.__module__ == errors.__name__


def test_a_new_code_must_declare_its_status_and_cannot_take_anothers() -> None:
    with pytest.raises(TypeError, match="http_status"):

        class NoStatus(SmevbusError):
            code = "no_status_given"

    with pytest.raises(TypeError, match="already"):

        class Twin(SmevbusError):
            code = "not_found"
            http_status = 404

    assert error_class("no_status_given") is None
    assert error_class("not_found") is errors.NotFound


@pytest.mark.parametrize("cls", _every_error_class(), ids=lambda c: c.__qualname__)
def test_client_faults_are_4xx_and_soap_client(cls: type[SmevbusError]) -> None:
    fault = fault_of(cls("something", field="x"))
    assert fault.code == cls.code
    if cls.origin is Origin.CLIENT:
        assert 400 <= fault.http_status < 500
        assert fault.soap_faultcode is SoapFaultCode.CLIENT
    else:
        assert fault.http_status >= 500
        assert fault.soap_faultcode is SoapFaultCode.SERVER
    assert fault.detail == {"field": "x"}
    assert problem_json(cls("something"))["status"] == fault.http_status


def test_readme_error_table_lists_every_code() -> None:
    """README's "Error codes" table: one row per code, with its status and faultcode."""
    section = README.read_text(encoding="utf-8").split("## Error codes", 1)[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| `(soap:\w+)` \| (\w+) \|", section, re.M)
    documented = {code: (int(status), soap, origin) for code, status, soap, origin in rows}
    assert len(rows) == len(documented)
    assert documented == {
        e.code: (e.http_status, str(e.soap_faultcode), str(e.origin)) for e in error_classes()
    }


def test_unknown_exception_becomes_internal_without_leaking() -> None:
    body = problem_json(RuntimeError("db password is hunter2"), instance="/api/v1/x")
    assert body["code"] == "internal"
    assert "hunter2" not in str(body)
    assert body["status"] == 500
    assert body["instance"] == "/api/v1/x"
    assert body["type"] == "urn:smevbus:error:internal"


def test_the_clients_import_no_server_module() -> None:
    probe = (
        "import importlib, pkgutil, sys, gateway.client as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module(f'{c.__name__}.{m.name}')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('gateway.api', 'fastapi'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
