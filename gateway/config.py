"""Settings: the only place smevbus reads the environment (prefix ``SMEVBUS_``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.crypto.profiles import SignatureProfile

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMEVBUS_", frozen=True, extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "sqlite:///./smevbus.db"
    #: ``memory`` (embedded, one process) or ``amqp`` (RabbitMQ).
    transport: str = Field(default="memory", pattern="^(memory|amqp)$")
    keys_dir: Path = REPO_ROOT / "keys"
    registry_file: Path = REPO_ROOT / "config" / "registry.toml"
    #: The service catalogue of the REST service-request API.
    services_file: Path = REPO_ROOT / "config" / "services.toml"
    #: How often the gateway fires due deadlines and looks for due callbacks (seconds).
    aggregator_interval_s: float = Field(default=1.0, gt=0)
    #: How long a reply that leaves its service request unfinished waits for the
    #: request's other replies, to be saved with them in one write (milliseconds; 0:
    #: each reply saved in its turn). See gateway/aggregator/reply_turns.py.
    aggregator_gather_ms: int = Field(default=20, ge=0, le=1000)
    #: A message journaled ACCEPTED this long ago and still not queued was left by a
    #: process that died before publishing it: the gateway publishes it then (seconds;
    #: see gateway/router/outbox.py). Looked for every ``relay_after_s / 2``. More than
    #: the 2 s a published message may wait for its QUEUED mark (gateway/router/marks.py).
    relay_after_s: float = Field(default=10.0, gt=2.0)
    xsd_dir: Path = REPO_ROOT / "xsd"
    signature_profile: SignatureProfile = SignatureProfile.SMEV
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    #: Gateway processes serving the one port (``smevbus serve``); more than one needs
    #: the amqp transport and a shared database. Each runs its own aggregator rounds
    #: and callback deliveries; the store's compare-and-set and leases keep them apart.
    http_workers: int = Field(default=1, ge=1, le=64)
    #: Take the client's scheme and address from ``X-Forwarded-Proto`` and
    #: ``X-Forwarded-For`` when a request comes from an address in uvicorn's
    #: ``FORWARDED_ALLOW_IPS`` (default ``127.0.0.1,::1``): a proxy in front that ends
    #: TLS. False when nothing is in front: no request pays for the look.
    proxy_headers: bool = True
    prefetch: int = Field(default=32, ge=1)
    #: How long a pulled message stays invisible, waiting for its Ack, before it comes
    #: back to the queue (seconds).
    visibility_timeout_s: float = Field(default=60.0, gt=0)
    #: Largest accepted document, bytes (SMEV 3 inline limit).
    max_message_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    #: What one XML document may carry (gateway.xml.parse.XmlLimits); past any of these
    #: it is refused as invalid_content before anything else reads it, so that every
    #: later step (XSD, signature, serialization) stays linear in its size.
    #: Element nesting; libxml2 stops at 256 whatever this says.
    xml_max_depth: int = Field(default=64, ge=8, le=256)
    #: Elements in one document. 5 MB of typical SMEV XML holds fewer; refusing a
    #: document at the limit costs about 100 ms of CPU, growing with the limit.
    xml_max_elements: int = Field(default=50_000, ge=100)
    #: Attributes of one element (namespace declarations not counted).
    xml_max_attributes: int = Field(default=64, ge=8)
    #: Attributes in one document (each costs the signature's digest about 0.5 us).
    xml_max_attributes_in_document: int = Field(default=50_000, ge=100)
    #: Namespace declarations in one document.
    xml_max_namespaces: int = Field(default=1024, ge=16)
    #: Namespace declarations on one element and its ancestors together.
    xml_max_namespaces_in_scope: int = Field(default=128, ge=16)
    #: Bytes the parser may read between two start tags: one text, one comment, or
    #: one start tag with all its attributes (to within 16 KiB).
    xml_max_text_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)
    #: Documents larger than this (bytes) are read, checked and verified in a worker
    #: thread, so the event loop keeps answering meanwhile; smaller ones inline (a
    #: thread hop costs more than they do).
    xml_thread_above_bytes: int = Field(default=64 * 1024, ge=0)
    #: Largest REST (``/api/v1``) request body, bytes; a larger one is refused (413)
    #: before it is parsed.
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: How far a MessageID's UUID v1 time may lie from now (replay window), seconds.
    message_id_window_s: int = Field(default=2 * 24 * 3600, ge=60)
    #: auto: console lines on a terminal, JSON lines otherwise.
    log_format: str = Field(default="auto", pattern="^(auto|console|json)$")
    log_level: str = "INFO"
    #: REST API bearer tokens -> the participant (mnemonic) each one authenticates, as
    #: JSON in ``SMEVBUS_API_TOKENS='{"token": "PORTAL"}'``. Empty: the REST API refuses
    #: every call. Kept out of ``repr`` so tokens never reach a log.
    api_tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    #: Operator tokens for the ops surfaces (``/ui``, ``/api/v1/ops``, ``/api/v1/kpi``,
    #: ``/metrics``): JSON in ``SMEVBUS_OPS_TOKENS='{"token": "ivanov"}'`` (token -> the
    #: operator's name, journaled with what they do). Empty: those surfaces are closed.
    ops_tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    #: Serve ``/metrics`` without an operator token (for a Prometheus on a private network).
    metrics_public: bool = False
    #: Where the ops console checks that an agency is reachable: JSON in
    #: ``SMEVBUS_AGENCY_PROBES='{"ZAGS": "http://zags-adapter:8091/health"}'``
    #: (participant -> URL of its adapter's or the agency's health endpoint; a 2xx
    #: answer means reachable). A participant left out is not probed.
    agency_probes: dict[str, str] = Field(default_factory=dict)
    #: How long one such probe may take, seconds.
    agency_probe_timeout_s: float = Field(default=2.0, gt=0, le=30)
    #: RabbitMQ's management HTTP API (``http://rabbitmq:15672``; user and password from
    #: the URL, else from ``amqp_url``), for unacked counts of the queue figures. Unset:
    #: passive declares (ready and consumers only).
    rabbitmq_management_url: str | None = None
    #: How often the background samplers read the queues, the journal's agency
    #: availability and the certificates for ``/metrics`` (seconds), and how long one
    #: round may take before it counts as failed.
    metrics_interval_s: float = Field(default=15.0, gt=0)
    metrics_timeout_s: float = Field(default=10.0, gt=0)
    #: The window ``smevbus_agency_availability_ratio`` is computed over, and how often
    #: (seconds): a journal query over the window's requests.
    availability_window_s: float = Field(default=3600.0, gt=0)
    availability_interval_s: float = Field(default=60.0, gt=0)
    #: Where the gateway processes of ``smevbus serve --workers N`` (N > 1) keep their
    #: metric files for ``/metrics`` to merge; emptied at start. Unset: a new temporary
    #: directory, removed at exit.
    metrics_dir: Path | None = None
    #: Port of an adapter process's own ``/metrics``, ``/health`` and ``/ready``
    #: (``smevbus adapter --ops-port``; on ``http_host``); 0: none.
    adapter_ops_port: int = Field(default=9102, ge=0, le=65535)
    #: The gateway's base URL as portals reach it (``https://bus.region.example``), for
    #: the ``self`` links in result callbacks. Default: ``http://HTTP_HOST:HTTP_PORT``.
    public_url: str | None = None
    #: Hosts a ``callback_url`` may name, against SSRF: ``portal.example.org`` or
    #: ``*.example.org`` (any subdomain); a JSON list or comma-separated in
    #: ``SMEVBUS_CALLBACK_HOSTS``. Empty: any name (its addresses are still checked).
    callback_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    #: Networks callbacks may reach although they are loopback, private, link-local or
    #: otherwise special-use (``10.20.0.0/16``, ``127.0.0.0/8`` for tests); a JSON list or
    #: comma-separated. Empty: only public addresses. The gateway's own address stays
    #: refused unless listed alone (``/32``, ``/128``). See
    #: :mod:`gateway.aggregator.callback_addresses`.
    callback_networks: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()
    #: How long a ``callback_url``'s host may take to resolve at submit, seconds.
    callback_resolve_timeout_s: float = Field(default=5.0, gt=0)
    #: Key of the ``X-Smevbus-Signature`` HMAC-SHA256 on each callback; unset: unsigned.
    callback_secret: SecretStr | None = None
    #: POST attempts per callback before it is given up as ``failed``.
    callback_max_attempts: int = Field(default=8, ge=1, le=100)
    #: Wait after the first failed attempt; it doubles per attempt up to the maximum.
    callback_backoff_s: float = Field(default=1.0, gt=0)
    callback_backoff_max_s: float = Field(default=300.0, gt=0)
    #: Timeout of one whole callback POST, seconds.
    callback_timeout_s: float = Field(default=10.0, gt=0)
    #: TLS of ``smevbus serve``: the gateway's certificate (PEM, may hold the chain) and
    #: private key. Unset: plain HTTP (behind a TLS-terminating proxy, say).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: CA certificates (PEM) a participant's TLS client certificate must chain to.
    tls_client_ca_file: Path | None = None
    #: Whether a client must present a TLS certificate: ``required`` (the default: a
    #: TLS gateway is a mutual TLS gateway unless told otherwise), ``optional`` or
    #: ``none``. A certificate presented on /ws must belong to the participant whose
    #: signature the message carries.
    tls_client_cert: Literal["required", "optional", "none"] = "required"
    #: TLS of a participant process (``smevbus adapter``) calling the gateway: CA
    #: certificates to trust for the gateway's certificate (unset: the system's), and the
    #: participant's own client certificate and key to present.
    client_tls_ca_file: Path | None = None
    client_tls_cert_file: Path | None = None
    client_tls_key_file: Path | None = None

    @field_validator("callback_hosts", "callback_networks", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [h.strip() for h in text.split(",") if h.strip()]
        return value

    @model_validator(mode="after")
    def _tls_complete(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both SMEVBUS_TLS_CERT_FILE and SMEVBUS_TLS_KEY_FILE, or neither")
        if (
            self.tls_cert_file is not None
            and self.tls_client_cert != "none"
            and self.tls_client_ca_file is None
        ):
            raise ValueError(
                f"SMEVBUS_TLS_CLIENT_CERT={self.tls_client_cert} needs "
                "SMEVBUS_TLS_CLIENT_CA_FILE (the CA participants' TLS certificates chain "
                "to); set SMEVBUS_TLS_CLIENT_CERT=none for TLS without client certificates"
            )
        if (self.client_tls_cert_file is None) != (self.client_tls_key_file is None):
            raise ValueError(
                "set both SMEVBUS_CLIENT_TLS_CERT_FILE and SMEVBUS_CLIENT_TLS_KEY_FILE, or neither"
            )
        return self

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values this process holds (API and operator tokens, the callback
        secret): the log redactor masks them wherever they appear."""
        callback = (
            () if self.callback_secret is None else (self.callback_secret.get_secret_value(),)
        )
        return (*self.api_tokens, *self.ops_tokens, *callback)

    @property
    def base_url(self) -> str:
        """Where portals reach this gateway (``public_url``, else host and port)."""
        scheme = "http" if self.tls_cert_file is None else "https"
        return (self.public_url or f"{scheme}://{self.http_host}:{self.http_port}").rstrip("/")
