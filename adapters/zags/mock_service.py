"""Run the mock ZAGS registry: ``python -m adapters.zags.mock_service --port N``.

Serves the WSDL at ``/zags?wsdl``, SOAP at ``POST /zags``, knobs at ``/_control``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from adapters.zags.mock import MockZagsConfig, create_mock_zags

__all__ = ["create_mock_zags", "main"]


def _parser() -> argparse.ArgumentParser:
    defaults = MockZagsConfig()
    parser = argparse.ArgumentParser(
        prog="python -m adapters.zags.mock_service", description="Run the mock ZAGS registry."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8091, help="port to listen on")
    parser.add_argument("--latency-ms", type=int, default=defaults.latency_ms)
    parser.add_argument("--error-rate", type=float, default=defaults.error_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the error draw")
    parser.add_argument("--data-seed", type=int, default=defaults.data_seed)
    parser.add_argument("--families", type=int, default=defaults.families)
    parser.add_argument("--log-level", default="warning")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = MockZagsConfig(
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            seed=args.seed,
            data_seed=args.data_seed,
            families=args.families,
        )
    except ValidationError as exc:
        parser.error(str(exc))
    uvicorn.run(create_mock_zags(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
