"""The command line every mock agency shares: knobs as flags, then uvicorn."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from adapters.mocks.knobs import MockConfig


def run_mock(
    *,
    prog: str,
    description: str,
    default_port: int,
    make_app: Callable[[MockConfig], FastAPI],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse the shared flags and serve ``make_app(config)`` until interrupted."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--outage", action="store_true")
    parser.add_argument("--malformed", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seed of the error-rate RNG")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        config = MockConfig(
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            outage=args.outage,
            malformed=args.malformed,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    uvicorn.run(
        make_app(config),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
