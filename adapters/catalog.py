"""The adapters ``smevbus adapter NAME`` can run: who they act for and how to build one."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.sdk import Adapter


@dataclass(frozen=True)
class AdapterSpec:
    #: The participant the adapter answers for (its key signs the answers).
    mnemonic: str
    #: What ``--agency-url`` means for this adapter.
    agency_url_help: str
    default_agency_url: str
    build: Callable[[str], tuple[Adapter, Callable[[], object]]]


def _zags(url: str) -> tuple[Adapter, Callable[[], object]]:
    from adapters.zags.adapter import build_zags_adapter

    adapter = build_zags_adapter(url)
    return adapter, adapter.aclose


def _mvd(url: str) -> tuple[Adapter, Callable[[], object]]:
    from adapters.mvd_migration.adapter import build_mvd_adapter

    adapter = build_mvd_adapter(url)
    return adapter, adapter.aclose


def _fns(url: str) -> tuple[Adapter, Callable[[], object]]:
    from adapters.fns.adapter import build_fns_adapter

    adapter = build_fns_adapter(url)
    return adapter, adapter.aclose


ADAPTERS: dict[str, AdapterSpec] = {
    "zags": AdapterSpec(
        "ZAGS", "WSDL of the ZAGS registry", "http://127.0.0.1:8091/zags?wsdl", _zags
    ),
    "mvd_migration": AdapterSpec(
        "MVD_MIGR", "base URL of the MVD migration service", "http://127.0.0.1:8701", _mvd
    ),
    "fns": AdapterSpec("FNS", "base URL of the FNS INN service", "http://127.0.0.1:8702", _fns),
}


async def close_quietly(closer: Callable[[], object]) -> None:
    """Call a sync or async close function."""
    result = closer()
    if inspect.isawaitable(result):
        await _awaited(result)


async def _awaited(result: Awaitable[object]) -> None:
    await result
