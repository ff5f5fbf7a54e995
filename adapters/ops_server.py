"""An adapter process's own small HTTP server for operators: ``/health``, ``/ready``,
``/metrics`` (aiohttp, on ``SMEVBUS_ADAPTER_OPS_PORT`` / ``smevbus adapter --ops-port``).

* ``/health``: the process runs (200).
* ``/ready``: every check passes (200) or not (503), with each check's result:
  ``{"status": "ok"|"unavailable", "checks": {"broker": "ok", "gateway": "...", ...}}``.
  Each check is bounded by ``check_timeout``.
* ``/metrics``: the process's Prometheus metrics; an operator's bearer token from
  ``SMEVBUS_OPS_TOKENS`` is required unless ``SMEVBUS_METRICS_PUBLIC=true``.

Nothing here touches a request in flight: the checks are reads of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from gateway.api.auth import TokenAuth
from gateway.core.errors import Unauthenticated
from gateway.ops import metrics

#: One readiness check: returns when fine, raises (its message says why) when not.
Check = Callable[[], Awaitable[None]]


class OpsServer:
    """``/health``, ``/ready`` and ``/metrics`` on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        tokens: Mapping[str, str],
        public: bool,
        host: str = "127.0.0.1",
        port: int = 0,
        check_timeout: float = 5.0,
    ) -> None:
        self.checks = dict(checks)
        self._auth = TokenAuth(tokens) if tokens else None
        self._public = public
        self._host, self._port = host, port
        self._check_timeout = check_timeout
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def readiness(self) -> dict[str, str]:
        """Each check's result: ``"ok"`` or why not."""
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[name]) for name in names))
        return dict(zip(names, results, strict=True))

    async def _run(self, check: Check) -> str:
        try:
            async with asyncio.timeout(self._check_timeout):
                await check()
        except TimeoutError:
            return f"unavailable: no answer within {self._check_timeout} s"
        except Exception as exc:
            return f"unavailable: {exc}" if str(exc) else f"unavailable: {type(exc).__name__}"
        return "ok"

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _ready(self, _request: web.Request) -> web.Response:
        checks = await self.readiness()
        ok = all(result == "ok" for result in checks.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status=200 if ok else 503,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self._public:
            try:
                if self._auth is None:
                    raise Unauthenticated("no operator tokens are configured (SMEVBUS_OPS_TOKENS)")
                scheme, _, token = request.headers.get("Authorization", "").partition(" ")
                self._auth.participant_for(token.strip() if scheme.lower() == "bearer" else None)
            except Unauthenticated as exc:
                return web.json_response(
                    {"code": exc.code, "detail": exc.message},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE})
