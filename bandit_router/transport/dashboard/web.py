"""The dashboard's HTTP server: the page, its vendored chart library, JSON endpoints and /metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bandit_router.observability import alerts, estimates, views
from bandit_router.observability.colours import model_colours
from bandit_router.observability.control import against_best_single, control_view
from bandit_router.serving.rollout import rollout_view
from bandit_router.transport.guard import EdgeLimits, start_site, track_requests

if TYPE_CHECKING:
    from bandit_router.config import AuthConfig
    from bandit_router.serving.router import RouterService

log = logging.getLogger(__name__)

T = TypeVar("T")
# Runs a coroutine on the router's own event loop and gives an awaitable of its result on the dashboard's.
OnServing = Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]

STATIC = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
    "vendor/chart.umd.min.js": "application/javascript",
}
# What each JSON endpoint answers (docs/operations.md documents the same; tests/transport/test_dashboard.py checks
# that every route below is here).
ENDPOINTS = {
    "/api/summary": "policy versions, learning and gate counters, models, tasks, alerts",
    "/api/shares": "share of decisions per model per time bucket (?task= for one task)",
    "/api/rewards": "mean reward, quality, cost and energy per bucket; energy by source; reward per model",
    "/api/drift": "TV and KL of each served policy from the previous and the first on the probe set; "
    "each model's mean probability on the probes; the quality gate's verdicts",
    "/api/exploration": "mean pmf entropy and chosen-action probability per bucket",
    "/api/ope": "doubly robust (the headline), IPS and SNIPS, with intervals and support, of the live policy, "
    "uniform random and each single model",
    "/api/control": "routing against its control group (rollout.control_share): each arm's mean reward, quality, "
    "cost and energy, and the difference's anytime-valid 95% interval; and against the best single model off-policy",
    "/api/rollout": "each tenant's mode, configured and served, and on its apprentice traffic the policy's and "
    "the baseline's IPS estimates, their difference's confidence sequence, and when it promoted the tenant",
    "/api/health": "pending and expired decisions, reward delay, learner lag",
    "/api/backends": "each model's backend as the gateway saw its calls: calls, failures, recent failure rate, "
    "latency, time to first token, the last failure",
}


def _window(request: web.Request) -> float:
    text = request.query.get("window", "0")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise web.HTTPBadRequest(text=f"window must be a number of seconds >= 0 (0: everything), got {text!r}")
    return value


def _json(body: Any) -> web.Response:
    # NaN is not JSON: a value that could not be computed is null.
    return web.Response(text=json.dumps(body, allow_nan=False, default=str), content_type="application/json")


class _Views:
    """The dashboard's views of one router. ``on_serving`` runs a coroutine that needs the router's own event
    loop (its Redis client lives there) and awaits its result; without it the dashboard runs on that loop."""

    def __init__(self, service: RouterService, on_serving: OnServing | None) -> None:
        self.service = service
        self.monitor = service.monitor
        self.on_serving = on_serving
        self.page = resources.files("bandit_router.transport.dashboard").joinpath("static")

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return await (self.on_serving(coro) if self.on_serving is not None else coro)

    async def index(self, request: web.Request) -> web.Response:
        text = self.page.joinpath("index.html").read_text(encoding="utf-8")
        return web.Response(text=text, content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound(text=f"no static file {name!r}")
        return web.Response(body=self.page.joinpath(name).read_bytes(), content_type=STATIC[name])

    def _gate(self) -> dict[str, Any]:
        """The learner's figures: counts over every tenant's traffic, so for the pooled view only."""
        state = self.service.learner_state()
        if state is None:
            return {"learner_version": None, "gate_promotions": 0, "gate_rejections": 0, "gate_last": None}
        return {
            "learner_version": f"v{state.version}",
            "gate_promotions": state.promotions,
            "gate_rejections": state.rejections,
            "gate_last": state.verdicts[-1].to_json() if state.verdicts else None,
        }

    async def summary(self, request: web.Request) -> web.Response:
        tenant = _tenant(request)
        service, stats = self.service, self.service.stats()
        pooled = tenant is None
        routes = [r for r in list(self.monitor.routes) if pooled or r.tenant == tenant]
        gate = self._gate() if pooled else dict.fromkeys(("learner_version", "gate_promotions", "gate_rejections"))
        return _json(
            {
                "viewer": "all tenants" if pooled else tenant,
                "policy_version": stats.policy_version,
                # Counts over every tenant's traffic: in the pooled view only, as GetStats is for admins only.
                "events_learned": stats.events_learned if pooled else None,
                "gate_last": None,
                **gate,
                "models": [m.id for m in service.list_models()],
                # The same colour per model as every report and plot; models routed to under an older catalog too.
                "colours": model_colours([*(m.id for m in service.config.models), *sorted({r.model for r in routes})]),
                "tasks": sorted({r.task for r in routes}),
                "alerts": alerts.alerts(self.monitor, tenant),
                "endpoints": ENDPOINTS,
            }
        )

    async def shares(self, request: web.Request) -> web.Response:
        return _json(views.shares(self.monitor, _window(request), request.query.get("task", ""), _tenant(request)))

    async def rewards(self, request: web.Request) -> web.Response:
        return _json(_nulls(views.rewards_view(self.monitor, _window(request), _tenant(request))))

    async def drift(self, request: web.Request) -> web.Response:
        # The served policy is every tenant's: its drift is shown to each; the gate's reasons, estimates over
        # every tenant's rewards, only in the pooled view.
        window = _window(request)
        view = views.drift_view(self.monitor, window)
        since = self.monitor.clock() - window if window > 0 else float("-inf")
        state = self.service.learner_state()
        pooled = _tenant(request) is None
        view["gate"] = [
            {"t": v.at, "version": f"v{v.version}", "promoted": v.promoted, **({"reason": v.reason} if pooled else {})}
            for v in (state.verdicts if state else ())
            if v.at >= since
        ]
        return _json(_nulls(view))

    async def exploration(self, request: web.Request) -> web.Response:
        return _json(views.exploration(self.monitor, _window(request), _tenant(request)))

    async def ope(self, request: web.Request) -> web.Response:
        config = self.service.config.dashboard
        view = estimates.ope(
            self.monitor,
            _window(request),
            tenant=_tenant(request),
            min_support=config.ope_min_support,
            min_ess=config.ope_min_ess,
        )
        return _json(_nulls(view))

    async def control(self, request: web.Request) -> web.Response:
        """Routing against its control group (measured), and against the best single model (estimated off-policy)."""
        dashboard, rollout = self.service.config.dashboard, self.service.config.rollout
        window, tenant = _window(request), _tenant(request)
        view = control_view(self.monitor, window, tenant, horizon=rollout.promote_horizon)
        view["share"], view["baseline"] = rollout.control_share, rollout.control
        view["best_single"] = against_best_single(
            estimates.ope(self.monitor, window, tenant=tenant, min_support=dashboard.ope_min_support,
                          min_ess=dashboard.ope_min_ess)
        )  # fmt: skip
        return _json(_nulls(view))

    async def health(self, request: web.Request) -> web.Response:
        tenant = _tenant(request)
        if tenant is not None:
            return _json(_nulls(views.health(self.monitor, None, None, tenant)))
        lag, expired = await self.call(self.service.learner_lag()), await self.call(self.service.expired_count())
        return _json(_nulls(views.health(self.monitor, lag, expired)))

    async def backends(self, request: web.Request) -> web.Response:
        """Each model's backend as the gateway saw it (no tenant's traffic can be read off it)."""
        return _json(_nulls({"backends": self.service.upstreams.view(_tenant(request))}))

    async def rollout(self, request: web.Request) -> web.Response:
        """Apprentice mode's evidence, from the served policy (so the same on every replica)."""
        config = self.service.config.rollout
        return _json(_nulls({"tenants": rollout_view(config, self.service.serving.apprentices, _tenant(request))}))

    async def metrics(self, request: web.Request) -> web.Response:
        if _tenant(request) is not None:
            raise web.HTTPForbidden(
                text="metrics pool every tenant's traffic: they need the dashboard token or an admin tenant's"
            )
        await self.call(self.service.refresh_metrics())
        return web.Response(
            body=generate_latest(self.monitor.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def build_app(service: RouterService, on_serving: OnServing | None = None) -> web.Application:
    """The dashboard's routes (see :class:`_Views`), behind the token check."""
    handlers = _Views(service, on_serving)
    app = web.Application(middlewares=[track_requests, _token_check(service.config.auth)])
    app.add_routes(
        [
            web.get("/", handlers.index),
            web.get("/static/{name:.+}", handlers.static),
            web.get("/api/summary", handlers.summary),
            web.get("/api/shares", handlers.shares),
            web.get("/api/rewards", handlers.rewards),
            web.get("/api/drift", handlers.drift),
            web.get("/api/exploration", handlers.exploration),
            web.get("/api/ope", handlers.ope),
            web.get("/api/control", handlers.control),
            web.get("/api/health", handlers.health),
            web.get("/api/backends", handlers.backends),
            web.get("/api/rollout", handlers.rollout),
            web.get("/metrics", handlers.metrics),
        ]
    )
    return app


COOKIE = "bandit_router_dashboard"


def _same(given: str, token: str) -> bool:
    """Constant-time comparison of strings in any script (compare_digest takes only ASCII str)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape"))


# The tenant whose view a request gets; None (or unset) for the pooled view of every tenant.
TENANT = web.RequestKey("tenant", str)


def _tenant(request: web.Request) -> str | None:
    return request.get(TENANT)


def _token_check(auth: AuthConfig) -> Any:
    """Who is looking. Without tokens of any kind the dashboard is open, pooled (one tenant). Otherwise every path
    asks for a token, as ``Authorization: Bearer TOKEN`` or the cookie that opening ``/?token=TOKEN`` in a
    browser sets: the dashboard token, or an admin tenant's, sees every tenant pooled; another tenant's token
    sees that tenant's own traffic only."""
    tenants = auth.tenant_by_token

    def viewer(given: str) -> tuple[bool, str | None]:
        """(known, tenant): every token is compared, in constant time, so timing says nothing."""
        found: tuple[bool, str | None] = (False, None)
        if auth.dashboard_token and _same(given, auth.dashboard_token):
            found = (True, None)
        for token, tenant in tenants.items():
            if _same(given, token) and not found[0]:
                found = (True, None if tenant in auth.admin_tenants else tenant)
        return found

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if not auth.dashboard_token and not tenants:
            return await handler(request)  # type: ignore[no-any-return]
        offered = request.query.get("token", "")
        if request.path == "/" and offered and viewer(offered)[0]:
            response = web.Response(status=302, headers={"Location": "/"})
            response.set_cookie(COOKIE, offered, httponly=True, samesite="Strict", secure=request.secure)
            return response
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ") if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
        known, tenant = viewer(given) if given else (False, None)
        if not known:
            raise web.HTTPUnauthorized(
                text="dashboard: a token is required (Authorization: Bearer TOKEN, or open /?token=TOKEN)"
            )
        if tenant is not None:
            request[TENANT] = tenant
        return await handler(request)  # type: ignore[no-any-return]

    return check


def _nulls(value: Any) -> Any:
    """Non-finite floats (an interval over one sample, a divergence not yet defined) become null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value


class Dashboard:
    """The dashboard's HTTP server, started and stopped with the gRPC server, on a thread and event loop of its
    own: a flood of dashboard clients, or a slow view over a long history, cannot delay the gRPC calls that
    the router's loop serves. What needs that loop (Redis) is run there and awaited."""

    def __init__(self, service: RouterService, listen: str) -> None:
        self.service = service
        self.listen = listen
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        serving = asyncio.get_running_loop()

        def on_serving(coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
            return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, serving))

        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open(on_serving))
            except BaseException as exc:
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="dashboard", daemon=True)
        self._thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            self._loop = None
            await asyncio.to_thread(self._thread.join)
            raise
        log.info("dashboard on %s (metrics at %smetrics)", self.url, self.url)

    async def _open(self, on_serving: OnServing) -> None:
        self.runner = web.AppRunner(build_app(self.service, on_serving), access_log=None)
        await self.runner.setup()
        limits = self.service.config.dashboard
        try:
            self.site, self.url = await start_site(
                self.runner, self.listen, EdgeLimits.of(limits), self.service.config.server
            )
        except BaseException:
            await self.runner.cleanup()
            raise

    async def stop(self) -> None:
        loop, thread, self._loop = self._loop, self._thread, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
