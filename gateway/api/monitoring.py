"""``GET /metrics``: this gateway's Prometheus metrics, for operators.

Protected like the other ops surfaces (:class:`~gateway.api.operators.OperatorAuth`: an
operator's bearer token or the ``/ui`` cookie; 401 without) unless
``SMEVBUS_METRICS_PUBLIC=true``. Rendering reads only memory (or, with several gateway
processes, their metric files): the figures that need I/O are sampled in the background
(:mod:`gateway.ops.samplers`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.api.operators import OperatorAuth
from gateway.api.rest import problem_response
from gateway.config import Settings
from gateway.core.errors import Unauthenticated
from gateway.ops import metrics


def metrics_router(settings: Settings) -> APIRouter:
    operators = OperatorAuth(settings.ops_tokens)
    public = settings.metrics_public
    router = APIRouter()

    @router.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics (operator token unless SMEVBUS_METRICS_PUBLIC)",
        responses={200: {"content": {metrics.CONTENT_TYPE: {}}}, 401: {}},
    )
    async def prometheus(request: Request) -> Response:
        if not public:
            try:
                operators.operator_for(request)
            except Unauthenticated as exc:
                return problem_response(exc, instance=request.url.path)
        body = metrics.render(multiprocess_dir=metrics.multiprocess_dir())
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return router
