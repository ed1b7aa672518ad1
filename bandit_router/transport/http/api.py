"""The JSON API: ``POST /v1/route``, ``/v1/reward`` (or ``/v1/feedback``) and ``/v1/fail``, as gRPC defines them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bandit_router.domain.records import Decision
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.observability.timing import SERVER_TIMING, phase, server_timing, timed
from bandit_router.observability.tracing import traced
from bandit_router.serving.router import RouterService
from bandit_router.serving.status import RewardOutcome
from bandit_router.transport.http.body import Body, read_object

TENANT = web.RequestKey("tenant", str)
# The fields each request may carry: any other is refused, naming it (a misspelled or misplaced field would
# otherwise be ignored, and the request served as if it had not asked).
ROUTE_FIELDS = ("query", "request_id", "candidates", "preferences", "task", "metadata", "budget", "baseline")
PREFERENCE_FIELDS = ("energy_weight", "cost_weight")
BUDGET_FIELDS = ("max_cost_usd", "max_energy_joules", "max_latency_ms")
REWARD_FIELDS = ("decision_id", "quality", "input_tokens", "output_tokens", "latency_ms", "energy_joules", "cost_usd")
FAIL_FIELDS = ("decision_id", "reason", "latency_ms")


def route_input(body: Body, tenant: str, query: str | None = None) -> RouteInput:
    """The Route request a JSON body asks for (the gateway passes the query it took from the messages)."""
    preferences, budget = body.object("preferences"), body.object("budget")
    preferences.only(PREFERENCE_FIELDS, "preferences")
    budget.only(BUDGET_FIELDS, "budget")
    return RouteInput(
        query=body.text("query") if query is None else query,
        request_id=body.text("request_id"),
        candidates=body.texts("candidates"),
        energy_weight=preferences.number("energy_weight"),
        cost_weight=preferences.number("cost_weight"),
        task=body.text("task"),
        metadata=body.mapping("metadata"),
        max_cost_usd=budget.number("max_cost_usd"),
        max_energy_joules=budget.number("max_energy_joules"),
        max_latency_ms=budget.number("max_latency_ms"),
        baseline=body.text("baseline"),
        tenant=tenant,
    )


def decision_json(decision: Decision) -> dict[str, Any]:
    """A decision as JSON, with the candidates ranked by probability (the chosen one first) for the caller's own
    fallbacks."""
    fields = decision.to_json()
    fields["pmf"] = [{"model": m, "probability": p} for m, p in decision.pmf]
    others = sorted((p, m) for m, p in decision.pmf if m != decision.model)
    fields["ranked"] = [decision.model, *(m for _, m in reversed(others))]
    fields["replayed"] = decision.replayed
    return fields


def outcome_json(outcome: RewardOutcome) -> dict[str, Any]:
    return {
        "decision_id": outcome.decision_id,
        "model": outcome.model,
        "reward": outcome.reward,
        "cost_usd": outcome.cost.value,
        "cost_source": outcome.cost.source.value,
        "cost_basis": outcome.cost.basis,
        "energy_joules": outcome.energy.value,
        "energy_source": outcome.energy.source.value,
        "energy_basis": outcome.energy.basis,
    }


class JsonApi:
    """Handlers that translate JSON to the router's domain calls and back; errors are raised as ApiError."""

    def __init__(self, service: RouterService) -> None:
        self.service = service

    async def route(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        body.only(ROUTE_FIELDS, "/v1/route")
        with traced("route", request.headers), timed() as phases:
            decision = await self.service.route(route_input(body, request[TENANT]))
        return web.json_response(decision_json(decision), headers={SERVER_TIMING: server_timing(phases)})

    async def reward(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        body.only(REWARD_FIELDS, request.path)
        domain = RewardInput(
            decision_id=body.text("decision_id"),
            quality=body.number("quality"),
            input_tokens=body.integer("input_tokens"),
            output_tokens=body.integer("output_tokens"),
            latency_ms=body.number("latency_ms") or 0.0,
            energy_joules=body.number("energy_joules"),
            cost_usd=body.number("cost_usd"),
            tenant=request[TENANT],
        )
        with traced("feedback", request.headers), phase("feedback", decision_id=domain.decision_id):
            outcome = await self.service.reward(domain)
        return web.json_response(outcome_json(outcome))

    async def fail(self, request: web.Request) -> web.Response:
        """A model call that errored or timed out: learned with ``reward.failure_quality``."""
        body = await read_object(request)
        body.only(FAIL_FIELDS, "/v1/fail")
        reason = body.text("reason")
        domain = RewardInput(
            decision_id=body.text("decision_id"),
            quality=None,
            latency_ms=body.number("latency_ms") or 0.0,
            tenant=request[TENANT],
            failure=reason or "failed",
        )
        return web.json_response(outcome_json(await self.service.reward(domain)))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/route", self.route)
        app.router.add_post("/v1/reward", self.reward)
        app.router.add_post("/v1/feedback", self.reward)
        app.router.add_post("/v1/fail", self.fail)
