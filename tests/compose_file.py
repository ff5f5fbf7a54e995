"""``docker-compose.yml`` read as data: each service's command and environment as the
container sees them, and the same run on this machine with local addresses.

The unit tests check the file against the code with it (settings, commands, ports,
files); the integration tests start a service's exact command and environment as a
local process, with ``host:port`` of other services replaced by local ones.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from gateway.config import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SMEVBUS_IMAGE = "smevbus:dev"
_HOST_PORT = re.compile(r"\b[a-z][a-z0-9-]*:\d{2,5}\b")


def dockerfile(path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """``ENV`` settings, ``COPY`` sources and ``ENTRYPOINT`` of a Dockerfile."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    env: dict[str, str] = {}
    sources: list[str] = []
    entrypoint: list[str] = []
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
        elif instruction == "COPY":
            sources.extend(shlex.split(rest)[:-1])
        elif instruction == "ENTRYPOINT":
            entrypoint = yaml.safe_load(rest)
    return env, sources, entrypoint


@dataclass(frozen=True)
class Service:
    name: str
    spec: Mapping[str, Any]
    #: The image's ``ENTRYPOINT`` and ``ENV`` (for services of our image).
    image_entrypoint: tuple[str, ...] = ()
    image_env: Mapping[str, str] | None = None

    @property
    def ours(self) -> bool:
        return bool(self.spec.get("image") == SMEVBUS_IMAGE)

    @property
    def argv(self) -> list[str]:
        """Entrypoint and command, as the container runs them."""
        entrypoint = self.spec.get("entrypoint", list(self.image_entrypoint))
        return [*entrypoint, *self.spec.get("command", [])]

    @property
    def environment(self) -> dict[str, str]:
        """The image's ``ENV`` overlaid by the service's ``environment``."""
        return {**(self.image_env or {}), **{k: str(v) for k, v in self.env_set.items()}}

    @property
    def env_set(self) -> dict[str, Any]:
        """What the compose file itself sets."""
        return dict(self.spec.get("environment") or {})

    def option(self, name: str) -> str | None:
        """The value after ``name`` in :attr:`argv`, if there."""
        argv = self.argv
        return argv[argv.index(name) + 1] if name in argv else None


class Compose:
    """The compose file's services (YAML anchors and merge keys resolved)."""

    def __init__(self, path: Path = COMPOSE_FILE) -> None:
        self.path = path
        self.document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))

    @cached_property
    def image(self) -> tuple[dict[str, str], list[str], list[str]]:
        return dockerfile(self.path.parent / "Dockerfile")

    def service(self, name: str) -> Service:
        spec = self.document["services"][name]
        if spec.get("image") != SMEVBUS_IMAGE:
            return Service(name, spec)
        env, _, entrypoint = self.image
        return Service(name, spec, tuple(entrypoint), env)

    @property
    def services(self) -> list[Service]:
        return [self.service(name) for name in self.document["services"]]

    def bind_mounts(self) -> list[tuple[str, Path, str]]:
        """Every ``./host:container`` volume: (service, host path, container path)."""
        mounts = []
        for service in self.services:
            for volume in service.spec.get("volumes", []):
                source, target = volume.split(":")[:2]
                if source.startswith("."):
                    mounts.append((service.name, self.path.parent / source, target))
        return mounts


def localise(text: str, addresses: Mapping[str, str]) -> str:
    """``text`` with each ``service:port`` of ``addresses`` replaced by its local
    ``host:port`` (``{"gateway:8080": "127.0.0.1:41234"}``); a ``service:port`` left
    out is an error, so no compose address reaches a local process unnoticed."""

    return _HOST_PORT.sub(lambda match: addresses[match.group(0)], text)
