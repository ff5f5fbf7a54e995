from pathlib import Path

import pytest

from gateway.core.errors import (
    AccessDenied,
    DestinationUnknown,
    InternalError,
    SenderNotRegistered,
)
from gateway.core.registry import Registry, parse_registry

REGISTRY = Path(__file__).parents[2] / "config" / "registry.toml"
BIRTH = "urn://smevbus/types/zags/birth-record/1.0"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return parse_registry(REGISTRY.read_text())


def test_sample_registry_has_the_four_participants(registry: Registry) -> None:
    assert registry.mnemonics == ("PORTAL", "ZAGS", "MVD_MIGR", "FNS")
    assert registry.bus_mnemonic == "SMEVBUS"


def test_portal_may_request_a_birth_record_from_zags(registry: Registry) -> None:
    portal = registry.get("PORTAL")
    assert registry.authorize_request(portal, BIRTH).mnemonic == "ZAGS"


def test_provider_may_not_request(registry: Registry) -> None:
    with pytest.raises(AccessDenied, match="MVD_MIGR is not allowed to request"):
        registry.authorize_request(registry.get("MVD_MIGR"), BIRTH)


def test_a_service_needs_every_part_type_allowed(registry: Registry) -> None:
    inn = "urn://smevbus/types/fns/inn/1.0"
    registry.authorize_requests("PORTAL", [BIRTH, inn])
    with pytest.raises(AccessDenied) as denied:
        registry.authorize_requests("FNS", [inn, BIRTH, BIRTH])
    assert denied.value.detail == {"participant": "FNS", "message_types": [inn, BIRTH]}
    with pytest.raises(SenderNotRegistered):
        registry.authorize_requests("NOBODY", [BIRTH])


def test_only_the_provider_may_answer(registry: Registry) -> None:
    registry.authorize_response(registry.get("ZAGS"), BIRTH)
    with pytest.raises(AccessDenied):
        registry.authorize_response(registry.get("FNS"), BIRTH)


def test_unknown_type_has_no_destination(registry: Registry) -> None:
    with pytest.raises(DestinationUnknown) as info:
        registry.provider_of("urn://nobody/1.0")
    assert info.value.code == "destination_unknown"


def test_identify_by_certificate(registry: Registry) -> None:
    assert registry.identify("ZAGS", "ab" * 32).mnemonic == "ZAGS"
    with pytest.raises(SenderNotRegistered):
        registry.identify("EVIL", "ab" * 32)


def test_pinned_fingerprint_must_match() -> None:
    reg = parse_registry(
        '[[participant]]\nmnemonic="A1"\nname="a"\ncertificate_cn="A1"\n'
        'certificate_fingerprints=["' + "aa" * 32 + '"]\n'
    )
    assert reg.identify("A1", "aa" * 32).mnemonic == "A1"
    with pytest.raises(SenderNotRegistered):
        reg.identify("A1", "bb" * 32)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[participant", "not valid TOML"),
        ('[[participant]]\nmnemonic="lower"\nname="x"\ncertificate_cn="x"', "mnemonic"),
        (
            '[[participant]]\nmnemonic="AA"\nname="x"\ncertificate_cn="x"\n'
            '[[participant]]\nmnemonic="AA"\nname="y"\ncertificate_cn="y"',
            "registered twice",
        ),
        (
            '[[participant]]\nmnemonic="AA"\nname="x"\ncertificate_cn="x"\nprovides=["t"]\n'
            '[[participant]]\nmnemonic="BB"\nname="y"\ncertificate_cn="y"\nprovides=["t"]',
            "provided by both",
        ),
        ('[[participant]]\nmnemonic="AA"\nname="x"\ncertificate_cn="x"\nbogus=1', "bogus"),
    ],
)
def test_bad_registry_fails_with_a_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(InternalError, match=fragment):
        parse_registry(text, source="reg.toml")
