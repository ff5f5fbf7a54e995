"""The FastAPI app every XML-over-HTTP mock agency starts from: health and knobs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from adapters.mocks.knobs import ControlUpdate, Knobs


def mock_app(title: str, knobs: Knobs, records: int) -> FastAPI:
    """An app with ``GET /health`` and ``GET``/``POST /_control``; add the agency's route."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None)
    app.state.knobs = knobs

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "records": records, **knobs.snapshot()}

    @app.get("/_control")
    async def show_control() -> dict[str, Any]:
        return knobs.snapshot()

    @app.post("/_control")
    async def control(change: ControlUpdate) -> dict[str, Any]:
        knobs.update(change)
        return knobs.snapshot()

    return app
