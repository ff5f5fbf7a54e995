"""The message journal's entry points: :func:`open_journal` (and the former name
``SqlStore.from_url``). The implementations are :mod:`gateway.store.journal_pg` and
:mod:`gateway.store.journal_sqlite`; :func:`gateway.store.open_stores` opens the
journal together with the service-request store on the same database."""

from __future__ import annotations

from gateway.store.base import Journal
from gateway.store.journal_rules import REPLAY_PURGE_INTERVAL
from gateway.store.stores import open_stores

__all__ = ["REPLAY_PURGE_INTERVAL", "SqlStore", "open_journal"]


def open_journal(url: str, *, schema: str | None = None) -> Journal:
    """The journal on ``url`` (``sqlite:///smevbus.db``, ``postgresql://...``); not migrated."""
    return open_stores(url, schema=schema).journal


class SqlStore:
    """The former name of the journal's opener: ``SqlStore.from_url(url)``."""

    from_url = staticmethod(open_journal)
