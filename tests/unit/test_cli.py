"""The ``smevbus`` command line through typer's CliRunner: keys, sign/verify, demo."""

from __future__ import annotations

import base64
import functools
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from gateway.bus import load_registry
from gateway.cli import app
from gateway.config import REPO_ROOT, Settings
from gateway.crypto import gost

SAMPLE = REPO_ROOT / "tests" / "data" / "soap" / "send-request.xml"

runner = CliRunner()
GOST_MISSING = gost.unavailable_reason()
GOST_KEY = "1.2.643.7.1.1.1.1"  # GOST R 34.10-2012 256-bit public key
GOST_SIGNED = "1.2.643.7.1.1.3.2"  # signed with GOST R 34.10-2012 256 over Streebog-256


@functools.cache
def expected_mnemonics() -> tuple[str, ...]:
    registry = load_registry(Settings())
    return (*registry.mnemonics, registry.bus_mnemonic)


def init_keys(keys_dir: Path) -> str:
    result = runner.invoke(app, ["keys", "init", "--dir", str(keys_dir)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys")
    init_keys(path)
    return path


def test_keys_init_writes_the_dev_pki(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    output = init_keys(keys)

    mnemonics = expected_mnemonics()
    assert set(mnemonics) == {"PORTAL", "ZAGS", "MVD_MIGR", "FNS", "SMEVBUS"}
    expected = {"ca.cert.pem", "ca.key.pem", "crl.pem"}
    expected |= {f"{m}.{kind}.pem" for m in [*mnemonics, "tls-server"] for kind in ("cert", "key")}
    assert {p.name for p in keys.iterdir()} == expected
    assert f"{len(expected)} file(s) written, 0 kept" in output
    for path in keys.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name.endswith(".key.pem"):
            assert mode == 0o600, f"{path.name} is {oct(mode)}"
        else:
            assert not mode & 0o022, f"{path.name} is writable by others: {oct(mode)}"
    assert (keys / "PORTAL.cert.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (keys / "crl.pem").read_bytes().startswith(b"-----BEGIN X509 CRL-----")
    assert b"PRIVATE KEY" in (keys / "ZAGS.key.pem").read_bytes()


def test_keys_init_twice_keeps_everything(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keys(keys)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in keys.iterdir()}

    output = init_keys(keys)

    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in keys.iterdir()}
    assert after == before
    assert f"0 file(s) written, {len(before)} kept" in output


def test_keys_init_adds_only_a_missing_participant(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keys(keys)
    (keys / "FNS.cert.pem").unlink()
    (keys / "FNS.key.pem").unlink()
    ca_before = (keys / "ca.cert.pem").read_bytes()
    zags_before = (keys / "ZAGS.cert.pem").read_bytes()

    output = init_keys(keys)

    assert "2 file(s) written" in output
    assert (keys / "FNS.cert.pem").is_file()
    assert stat.S_IMODE((keys / "FNS.key.pem").stat().st_mode) == 0o600
    assert (keys / "ca.cert.pem").read_bytes() == ca_before
    assert (keys / "ZAGS.cert.pem").read_bytes() == zags_before


def sign_sample(keys_dir: Path, out: Path, who: str = "PORTAL") -> None:
    result = runner.invoke(
        app,
        [
            "sign",
            str(SAMPLE),
            "--key",
            str(keys_dir / f"{who}.key.pem"),
            "--cert",
            str(keys_dir / f"{who}.cert.pem"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"signed -> {out}" in " ".join(result.output.split())


def test_sign_then_verify_names_the_signer(keys_dir: Path, tmp_path: Path) -> None:
    signed = tmp_path / "signed.xml"
    sign_sample(keys_dir, signed)
    assert b"AAAA</ds:SignatureValue>" not in signed.read_bytes()  # the placeholder is gone

    result = runner.invoke(app, ["verify", str(signed), "--keys", str(keys_dir)])

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "valid <SenderProvidedRequestData Id='SIGNED_BY_CONSUMER'>" in text
    assert "CN=PORTAL" in text


def test_verify_of_a_tampered_file_fails_with_the_code(keys_dir: Path, tmp_path: Path) -> None:
    signed = tmp_path / "signed.xml"
    sign_sample(keys_dir, signed)
    tampered = tmp_path / "tampered.xml"
    data = signed.read_bytes()
    assert data.count(b"<Number>482913</Number>") == 1
    tampered.write_bytes(data.replace(b"<Number>482913</Number>", b"<Number>482914</Number>"))

    result = runner.invoke(app, ["verify", str(tampered), "--keys", str(keys_dir)])

    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "signature_invalid" in text
    assert "changed after signing" in text
    assert "valid <" not in text


def test_verify_with_a_garbled_certificate_fails_cleanly(keys_dir: Path, tmp_path: Path) -> None:
    signed = tmp_path / "signed.xml"
    sign_sample(keys_dir, signed)
    data = signed.read_bytes()
    found = re.search(rb"<ds:X509Certificate>([^<]+)</ds:X509Certificate>", data)
    assert found is not None
    der = base64.b64decode(found.group(1))
    # The issuer's CN no longer valid UTF-8: cryptography only notices when it is read.
    garbled = der.replace(b"\x0c\x13smevbus dev", b"\x0c\x13\xffmevbus dev")
    assert garbled != der
    damaged = tmp_path / "damaged.xml"
    damaged.write_bytes(data.replace(found.group(1), base64.b64encode(garbled)))

    result = runner.invoke(app, ["verify", str(damaged), "--keys", str(keys_dir)])

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "signature_invalid" in result.output
    assert "not a usable certificate" in " ".join(result.output.split())


def test_verify_of_an_unsigned_file_fails(keys_dir: Path) -> None:
    result = runner.invoke(app, ["verify", str(SAMPLE), "--keys", str(keys_dir)])
    assert result.exit_code == 1
    assert "signature_invalid" in result.output


def test_verify_with_another_trust_store_fails(keys_dir: Path, tmp_path: Path) -> None:
    signed = tmp_path / "signed.xml"
    sign_sample(keys_dir, signed)
    other = tmp_path / "other-keys"
    init_keys(other)

    result = runner.invoke(app, ["verify", str(signed), "--keys", str(other)])

    assert result.exit_code == 1
    assert "certificate_untrusted" in result.output


def test_demo_runs_the_round_trip(keys_dir: Path) -> None:
    result = runner.invoke(app, ["demo", "--keys", str(keys_dir)])

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "round trip complete" in text
    assert "RESPONSE_DELIVERED" in text


def test_adapter_command_passes_mode_and_poll_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import adapters.process

    calls: list[tuple[str, str, dict[str, object]]] = []

    async def fake_run_adapter(
        name: str, settings: Settings, gateway_url: str, agency_url: str, **kw: object
    ) -> None:
        calls.append((name, gateway_url, kw))

    monkeypatch.setattr(adapters.process, "run_adapter", fake_run_adapter)
    pulled = runner.invoke(
        app, ["adapter", "zags", "--pull", "--poll-max", "2", "--gateway-url", "http://gw:8080"]
    )
    assert pulled.exit_code == 0, pulled.output
    pushed = runner.invoke(app, ["adapter", "fns", "--workers", "4"])
    assert pushed.exit_code == 0, pushed.output
    assert calls == [
        ("zags", "http://gw:8080", {"pull": True, "poll_max": 2.0, "workers": 1, "ops_port": None}),
        (
            "fns",
            "http://127.0.0.1:8080",
            {"pull": False, "poll_max": 10.0, "workers": 4, "ops_port": None},
        ),
    ]
    refused = runner.invoke(app, ["adapter", "zags", "--pull", "--poll-max", "0"])
    assert refused.exit_code != 0


# --- GOST R 34.10-2012 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gost_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if GOST_MISSING is not None:
        pytest.skip(f"GOST backend missing: {GOST_MISSING}")
    path = tmp_path_factory.mktemp("gost-keys")
    result = runner.invoke(
        app,
        [
            "keys",
            "init",
            "--dir",
            str(path),
            "--algorithm",
            "gost2012-256",
            "--participant-algorithm",
            "FNS=rsa",
            "--participant-algorithm",
            "MVD_MIGR=ec",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "no TLS server certificate under a GOST CA" in " ".join(result.output.split())
    return path


def _key_oid(path: Path) -> str:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_key_algorithm_oid.dotted_string


def test_keys_init_gost_makes_a_gost_pki_with_mixed_participants(gost_keys_dir: Path) -> None:
    keys = gost_keys_dir
    mnemonics = expected_mnemonics()
    expected = {"ca.cert.pem", "ca.key.pem", "crl.pem"}
    expected |= {f"{m}.{kind}.pem" for m in mnemonics for kind in ("cert", "key")}
    assert {p.name for p in keys.iterdir()} == expected  # no tls-server under a GOST CA
    ca = x509.load_pem_x509_certificate((keys / "ca.cert.pem").read_bytes())
    assert ca.signature_algorithm_oid.dotted_string == GOST_SIGNED
    assert _key_oid(keys / "ca.cert.pem") == GOST_KEY
    for mnemonic in ("PORTAL", "ZAGS", "SMEVBUS"):
        assert _key_oid(keys / f"{mnemonic}.cert.pem") == GOST_KEY, mnemonic
        assert stat.S_IMODE((keys / f"{mnemonic}.key.pem").stat().st_mode) == 0o600
        assert (
            (keys / f"{mnemonic}.key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        )
    assert _key_oid(keys / "FNS.cert.pem") == "1.2.840.113549.1.1.1"  # rsaEncryption
    assert _key_oid(keys / "MVD_MIGR.cert.pem") == "1.2.840.10045.2.1"  # id-ecPublicKey
    for mnemonic in mnemonics:
        cert = x509.load_pem_x509_certificate((keys / f"{mnemonic}.cert.pem").read_bytes())
        assert cert.signature_algorithm_oid.dotted_string == GOST_SIGNED, mnemonic
    crl = x509.load_pem_x509_crl((keys / "crl.pem").read_bytes())
    assert crl.signature_algorithm_oid.dotted_string == GOST_SIGNED


@pytest.mark.parametrize("who", ["PORTAL", "FNS"])
def test_sign_and_verify_with_a_gost_pki(gost_keys_dir: Path, tmp_path: Path, who: str) -> None:
    signed = tmp_path / "signed.xml"
    sign_sample(gost_keys_dir, signed, who)
    methods = re.findall(rb'SignatureMethod Algorithm="([^"]+)"', signed.read_bytes())
    gost_method = b"urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
    assert (methods == [gost_method]) is (who == "PORTAL")

    result = runner.invoke(app, ["verify", str(signed), "--keys", str(gost_keys_dir)])
    assert result.exit_code == 0, result.output
    assert f"CN={who}" in " ".join(result.output.split())

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(
        signed.read_bytes().replace(b"<Number>482913</Number>", b"<Number>482914</Number>")
    )
    result = runner.invoke(app, ["verify", str(tampered), "--keys", str(gost_keys_dir)])
    assert result.exit_code == 1
    assert "signature_invalid" in result.output


def test_demo_runs_on_a_gost_pki(gost_keys_dir: Path) -> None:
    result = runner.invoke(app, ["demo", "--keys", str(gost_keys_dir)])

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "round trip complete" in text
    assert "RESPONSE_DELIVERED" in text


def test_keys_init_refuses_a_gost_participant_under_an_ec_ca(keys_dir: Path) -> None:
    if GOST_MISSING is not None:
        pytest.skip(f"GOST backend missing: {GOST_MISSING}")
    before = {p.name for p in keys_dir.iterdir()}
    (keys_dir / "FNS.cert.pem").rename(keys_dir / "FNS.cert.pem.kept")
    try:
        result = runner.invoke(
            app, ["keys", "init", "--dir", str(keys_dir), "--algorithm", "gost2012-256"]
        )
    finally:
        (keys_dir / "FNS.cert.pem.kept").rename(keys_dir / "FNS.cert.pem")
    assert result.exit_code == 1
    assert "cannot certify a GOST key for FNS" in " ".join(result.output.split())
    assert {p.name for p in keys_dir.iterdir()} == before


@pytest.mark.parametrize("pair", ["NOBODY=ec", "ZAGS=dsa", "ZAGS"])
def test_keys_init_refuses_a_bad_participant_algorithm(tmp_path: Path, pair: str) -> None:
    result = runner.invoke(
        app, ["keys", "init", "--dir", str(tmp_path / "k"), "--participant-algorithm", pair]
    )
    assert result.exit_code == 2
    assert "MNEMONIC=ALGORITHM" in " ".join(result.output.split())
    assert not (tmp_path / "k").exists()


def test_keys_init_gost_without_the_engine_names_the_package(tmp_path: Path) -> None:
    # OPENSSL_ENGINES points OpenSSL's engine search at an empty directory.
    run = subprocess.run(
        [
            *(sys.executable, "-c", "from gateway.cli import app; app()"),
            *("keys", "init", "--dir", str(tmp_path / "k"), "--algorithm", "gost2012-256"),
        ],
        env={**os.environ, "OPENSSL_ENGINES": "/nonexistent", "COLUMNS": "400"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "cannot make the dev PKI" in run.stderr
    assert "libengine-gost-openssl" in run.stderr


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("false", False), ("true", True)])
def test_serve_takes_proxy_headers_only_as_the_settings_say(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    import uvicorn

    options: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: options.update(kwargs))
    env = {} if value is None else {"SMEVBUS_PROXY_HEADERS": value}
    result = runner.invoke(app, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    assert options["proxy_headers"] is expected
    assert options["server_header"] is False
