"""The gRPC edge: translates protobuf to domain calls and domain errors to status codes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bandit_router import errors
from bandit_router.config import RolloutConfig, ServerConfig
from bandit_router.domain.requests import BUDGETS, RewardInput, RouteInput
from bandit_router.domain.reward import Source
from bandit_router.serving.router import Decision, RouterService
from bandit_router.v1 import router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name

_STATUS: dict[type[errors.RouterError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}

_SOURCE = {
    Source.REPORTED: router_pb2.SOURCE_REPORTED,
    Source.MEASURED: router_pb2.SOURCE_MEASURED,
    Source.COMPUTED: router_pb2.SOURCE_COMPUTED,
    Source.ESTIMATED: router_pb2.SOURCE_ESTIMATED,
    Source.UNKNOWN: router_pb2.SOURCE_UNKNOWN,
}

T = TypeVar("T")
HEALTH_EVERY_S = 0.2


async def _call(context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], Awaitable[T]]) -> T:
    try:
        return await work()
    except errors.RouterError as exc:
        await context.abort(_STATUS[type(exc)], str(exc))
        raise  # abort raises; this line only satisfies the type checker


def _same_named(obj: object, message: Any) -> dict[str, Any]:
    """The dataclass fields of ``obj`` that the protobuf message type has a field of the same name for; a None
    (unknown) is left unset."""
    names = message.DESCRIPTOR.fields_by_name
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name in names}  # type: ignore[arg-type]
    return {k: v for k, v in fields.items() if v is not None}


def _decision_pb(d: Decision) -> router_pb2.RouteResponse:
    fields = _same_named(d, router_pb2.RouteResponse)
    fields["pmf"] = [router_pb2.ActionProbability(model=m, probability=p) for m, p in d.pmf]
    return router_pb2.RouteResponse(**fields)


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value.removeprefix("Bearer ")
    return ""


@dataclasses.dataclass(frozen=True)
class _Malformed:
    """What a request that does not parse as its message type deserialises to."""

    why: str


class MalformedRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A unary request that is not a valid protobuf message gets INVALID_ARGUMENT and one log line, not
    UNKNOWN and a traceback per call (grpc's own answer to a deserialiser that raises)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        method, parse, behavior = handler_call_details.method, handler.request_deserializer, handler.unary_unary

        def guarded(data: bytes) -> Any:
            try:
                return parse(data)
            except DecodeError as exc:
                return _Malformed(str(exc) or "cannot parse")

        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, _Malformed):
                log.warning("%s: malformed request: %s", method, request.why)
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"request: must be a valid {method} message: {request.why}"
                )
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(checked, guarded, handler.response_serializer)


class BearerAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls without a known bearer token (UNAUTHENTICATED); health checks stay open for probes."""

    def __init__(self, tenant_by_token: dict[str, str]) -> None:
        self.tenant_by_token = tenant_by_token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if method.startswith("/grpc.health.v1.Health/") or handler is None:
            return handler
        token = _bearer(handler_call_details.invocation_metadata)
        if token in self.tenant_by_token:
            return handler
        why = "a bearer token is required (metadata authorization: Bearer TOKEN)" if not token else "unknown token"

        async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authorization: {why}")

        if handler.request_streaming or handler.response_streaming:

            async def deny_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"authorization: {why}")

            return grpc.stream_stream_rpc_method_handler(
                deny_stream, handler.request_deserializer, handler.response_serializer
            )
        return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)


class RouterServicer:
    """Implements every method of bandit_router.v1.Router."""

    def __init__(self, service: RouterService) -> None:
        self.service = service
        self.tenant_by_token = service.config.auth.tenant_by_token

    def tenant(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The caller's tenant (the interceptor has already refused unknown tokens); "" without auth."""
        return self.tenant_by_token.get(_bearer(context.invocation_metadata()), "") if self.tenant_by_token else ""

    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.RouteResponse:
        prefs = request.preferences
        domain = RouteInput(
            query=request.query,
            request_id=request.request_id,
            candidates=tuple(request.candidates),
            energy_weight=prefs.energy_weight if prefs.HasField("energy_weight") else None,
            cost_weight=prefs.cost_weight if prefs.HasField("cost_weight") else None,
            task=request.task,
            metadata=dict(request.metadata),
            **{name: getattr(request.budget, name) for name in BUDGETS if request.budget.HasField(name)},
            baseline=request.baseline,
            tenant=self.tenant(context),
        )
        decision = await _call(context, lambda: self.service.route(domain))
        return _decision_pb(decision)

    async def Reward(
        self, request: router_pb2.RewardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.RewardResponse:
        domain = RewardInput(
            decision_id=request.decision_id,
            quality=request.quality if request.HasField("quality") else None,
            input_tokens=request.input_tokens,
            output_tokens=request.output_tokens,
            latency_ms=request.latency_ms,
            energy_joules=request.energy_joules if request.HasField("energy_joules") else None,
            cost_usd=request.cost_usd if request.HasField("cost_usd") else None,
            tenant=self.tenant(context),
        )
        outcome = await _call(context, lambda: self.service.reward(domain))
        return router_pb2.RewardResponse(
            reward=outcome.reward,
            decision_id=outcome.decision_id,
            model=outcome.model,
            cost_usd=outcome.cost.value,
            cost_source=_SOURCE[outcome.cost.source],
            cost_basis=outcome.cost.basis,
            energy_joules=outcome.energy.value,
            energy_source=_SOURCE[outcome.energy.source],
            energy_basis=outcome.energy.basis,
        )

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.ListModelsResponse:
        return router_pb2.ListModelsResponse(
            models=[
                router_pb2.ModelInfo(**_same_named(m, router_pb2.ModelInfo))
                for m in self.service.list_models()
                if m.enabled
            ]
        )

    async def GetStats(
        self, request: router_pb2.GetStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.StatsResponse:
        tenant = self.tenant(context)
        if tenant and tenant not in self.service.config.auth.admin_tenants:
            # The figures pool every tenant's rewards: one tenant would read another's traffic off them.
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"GetStats: tenant {tenant!r} is not in auth.admin_tenants; statistics span every tenant",
            )
        stats = self.service.stats()
        energy = stats.embedding_energy
        return router_pb2.StatsResponse(
            policy_version=stats.policy_version,
            events_learned=stats.events_learned,
            estimates=[
                router_pb2.ModelEstimate(model=model, **_same_named(estimate, router_pb2.ModelEstimate))
                for model, estimate in sorted(stats.estimates.items())
            ],
            embedding_device=stats.embedding_device,
            queries_embedded=stats.queries_embedded,
            embedding_energy_joules=energy.value,
            embedding_energy_source=_SOURCE[energy.source],
            embedding_energy_basis=energy.basis,
            control=_control_pb(self.service.control_view(), self.service.config.rollout),
        )


def _control_pb(view: dict[str, Any], rollout: RolloutConfig) -> router_pb2.ControlGroup:
    def arm(figures: dict[str, Any]) -> router_pb2.ControlArm:
        means = {f"mean_{k}": v for k, v in figures.items() if k != "n" and v is not None}
        return router_pb2.ControlArm(decisions=figures["n"], **means)

    bounds = {k: view[k] for k in ("difference", "lower", "upper") if view[k] is not None}
    return router_pb2.ControlGroup(
        share=rollout.control_share,
        baseline=rollout.control,
        routed=arm(view["routed"]),
        control=arm(view["control"]),
        value=view["value"],
        **bounds,
    )


def _connection_age(server: ServerConfig) -> list[tuple[str, int]]:
    if not server.max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", int(server.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(server.grace_s * 1000)),
    ]


class Server:
    """A gRPC server around a RouterService, with health checking and reflection; it starts and stops only
    itself (``bandit_router.runtime.process`` orders the whole process)."""

    def __init__(self, service: RouterService, listen: str) -> None:
        self.service = service
        # Room for the largest allowed query in 4-byte UTF-8, plus the rest of the request.
        limit = service.config.limits.max_query_chars * 4 + (1 << 20)
        tokens = service.config.auth.tenant_by_token
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", int(service.config.server.reuse_port)),
                *_connection_age(service.config.server),
            ],
            # Malformed requests first: it then also guards the refusals of BearerAuth.
            interceptors=[MalformedRequests(), *([BearerAuth(tokens)] if tokens else [])],
        )
        router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(service), self.grpc)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc)
        tls = service.config.server
        # grpcio answers a taken port with port 0 or, in newer releases, a RuntimeError: either way the
        # caller is told which setting to change.
        try:
            if tls.tls_cert_file:
                credentials = grpc.ssl_server_credentials(
                    [(Path(tls.tls_key_file).read_bytes(), Path(tls.tls_cert_file).read_bytes())]
                )
                self.port = self.grpc.add_secure_port(listen, credentials)
            else:
                self.port = self.grpc.add_insecure_port(listen)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(f"server.listen: cannot bind {listen} (is another router listening there?)")
        host = listen.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"
        self._health_task: asyncio.Task[None] | None = None

    async def _set_health(self, status: Any) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_health(self) -> None:
        """SERVING while the router can do its whole job; NOT_SERVING, with the reason logged, while it cannot
        (its embedded Redis is being restarted, the learner cannot persist)."""
        shown: str | None = None
        while True:
            problem = self.service.health_problem()
            if problem != shown:
                if problem is None:
                    log.info("health: SERVING again")
                else:
                    log.error("health: NOT_SERVING: %s", problem)
                status = health_pb2.HealthCheckResponse
                await self._set_health(status.SERVING if problem is None else status.NOT_SERVING)
                shown = problem
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.service.health_changed.wait(), HEALTH_EVERY_S)
            self.service.health_changed.clear()

    async def start(self) -> None:
        """Starts answering gRPC calls; health says nothing yet (see :meth:`serving`)."""
        await self.grpc.start()

    async def serving(self) -> None:
        """Health goes SERVING, then follows the router's own (see ``_watch_health``)."""
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._health_task = asyncio.get_running_loop().create_task(self._watch_health(), name="health")

    async def not_serving(self) -> None:
        """Health goes NOT_SERVING for good, so balancers stop sending; calls keep being answered."""
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING (when not already), then in-flight calls get ``grace`` seconds to finish."""
        await self.not_serving()
        await self.grpc.stop(grace)
