"""The HTTP server of the JSON API and the gateway, on the router's event loop: bearer tokens name the tenant."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bandit_router import errors
from bandit_router.serving.router import RouterService
from bandit_router.transport.guard import EdgeLimits, GuardedSite, start_site, track_requests
from bandit_router.transport.http.api import TENANT, JsonApi
from bandit_router.transport.http.backends import Backends
from bandit_router.transport.http.body import BODY_TIMEOUT_S
from bandit_router.transport.http.errors import ApiError, from_router_error
from bandit_router.transport.http.gateway import Gateway
from bandit_router.transport.http.probes import check_at_start, probe_open
from bandit_router.transport.http.tokenizers import Tokenizers

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpServer:
    """Serves ``http.listen`` while the gRPC server runs; stopped with it."""

    def __init__(self, service: RouterService) -> None:
        self.service = service
        self.config = service.config.http
        self.tenant_by_token = service.config.auth.tenant_by_token
        self.backends = Backends(self.config)
        self.tokenizers = Tokenizers()
        self.url = ""
        self.runner: web.AppRunner | None = None
        self.site: GuardedSite | None = None
        self._probing: asyncio.Task[None] | None = None

    def _tenant(self, request: web.Request) -> str:
        if not self.tenant_by_token:
            return ""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if token not in self.tenant_by_token:
            why = "a bearer token is required (Authorization: Bearer TOKEN)" if not token else "unknown token"
            raise ApiError(401, f"authorization: {why}", param="authorization", code="invalid_api_key")
        return self.tenant_by_token[token]

    @web.middleware
    async def _edge(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication, and every error in OpenAI's shape with its status; the server keeps serving."""
        try:
            # Probes need no token, as gRPC health checks need none.
            request[TENANT] = "" if request.path == "/healthz" else self._tenant(request)
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except errors.RouterError as exc:
            return from_router_error(exc).response()
        except web.HTTPNotFound:
            return ApiError(404, f"{request.method} {request.path}: no such endpoint", code="not_found").response()
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            return ApiError(
                405, f"{request.path} takes {allowed}, got {request.method}", code="method_not_allowed"
            ).response()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[track_requests, self._edge])
        app[BODY_TIMEOUT_S] = self.config.body_timeout_s
        JsonApi(self.service).add_routes(app)
        Gateway(self.service, self.backends, self.tokenizers).add_routes(app)
        app.router.add_get("/v1/backends", self._backends)
        app.router.add_get("/healthz", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        """200 while the router can do its whole job, else 503 with the reason: what gRPC health says, and, for the
        gateway, whether any routable model's backend is healthy."""
        # Only here, not in gRPC health (what restarts a pod): Route itself needs no backend.
        backed = [m.id for m in self.service.config.routable if m.base_url and m.enabled]
        problem = self.service.health_problem() or self.service.upstreams.none_healthy(backed)
        if problem is None:
            return web.json_response({"status": "SERVING"})
        return web.json_response({"status": "NOT_SERVING", "reason": problem}, status=503)

    async def _backends(self, request: web.Request) -> web.Response:
        """Each backend as the gateway saw the caller's own calls; every tenant's pooled for an admin tenant (and
        without authentication, where there is one pool)."""
        tenant = request[TENANT]
        pooled = not self.tenant_by_token or tenant in self.service.config.auth.admin_tenants
        return web.json_response({"backends": self.service.upstreams.view(None if pooled else tenant)})

    async def start(self) -> None:
        # Before anything is bound: a tokenizer that cannot be loaded stops the start with its key.
        await self.tokenizers.load(self.service.config.models)
        await self.backends.start()
        models, breakers = self.service.config.routable, self.service.upstreams.breakers
        if self.config.check_backends:
            try:
                await check_at_start(self.backends, models, breakers)
            except BaseException:
                await self.backends.close()
                raise
        self._probing = asyncio.get_running_loop().create_task(
            probe_open(self.backends, models, breakers, self.config.probe_interval_s), name="backend-probes"
        )
        self.runner = web.AppRunner(self.build_app(), access_log=None)
        await self.runner.setup()
        config = self.config
        try:
            self.site, self.url = await start_site(
                self.runner, config.listen, EdgeLimits.of(config), self.service.config.server
            )
        except OSError as exc:
            await self.stop()
            raise OSError(f"http.listen: cannot bind {config.listen}: {exc.strerror}") from None
        log.info("HTTP API and OpenAI-compatible gateway on %sv1/", self.url)

    async def stop(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probing
        if self.runner is not None:
            await self.runner.cleanup()
        await self.backends.close()
