import pytest

from gateway.core.errors import ALL_ERRORS, Origin, SmevbusError
from gateway.core.faults import HTTP_STATUS, fault_of, problem_json

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


def test_every_design_code_has_an_error_class() -> None:
    assert {e.code for e in ALL_ERRORS} >= DESIGN_CODES


def test_codes_are_unique_and_mapped() -> None:
    codes = [e.code for e in ALL_ERRORS]
    assert len(codes) == len(set(codes))
    assert set(codes) == set(HTTP_STATUS)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.code)
def test_client_faults_are_4xx_and_soap_client(cls: type[SmevbusError]) -> None:
    fault = fault_of(cls("something", field="x"))
    if cls.origin is Origin.CLIENT:
        assert 400 <= fault.http_status < 500
        assert fault.soap_faultcode == "soap:Client"
    else:
        assert fault.http_status >= 500
        assert fault.soap_faultcode == "soap:Server"
    assert fault.detail == {"field": "x"}


def test_unknown_exception_becomes_internal_without_leaking() -> None:
    body = problem_json(RuntimeError("db password is hunter2"), instance="/api/v1/x")
    assert body["code"] == "internal"
    assert "hunter2" not in str(body)
    assert body["status"] == 500
    assert body["instance"] == "/api/v1/x"
    assert body["type"] == "urn:smevbus:error:internal"
