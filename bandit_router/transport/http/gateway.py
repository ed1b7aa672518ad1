"""The OpenAI-compatible gateway: routes each request, calls the chosen model's backend, relays and meters its answer.

``model`` names the router (``bandit-router``, or ``bandit-router:energy=0.5,cost=0.1`` with the request's own
trade-off) or a catalog model, which passes straight through (no decision, still metered). The rest of the
body goes to the backend unchanged, but for the router's own fields (``candidates``, ``budget``, ``task``,
``metadata``, ``preferences``, ``conversation_id``), which may also come as headers (``x-bandit-router-task``,
``x-bandit-router-candidates``, ``x-bandit-router-conversation``). A chat's later turns stay on its first turn's
model (serving/affinity.py). For a tenant in apprentice mode (``rollout``), a concrete model is routed too, as the
baseline the policy learns beside (and once the tenant is promoted, served by the policy). A backend that fails
before answering is tried past, within ``http.deadline_s`` and ``http.max_attempts``: learned as a failure when
the failure says something of the model (timed out, HTTP 408, 409, 425, 429 or 5xx), dropped unlearned when it
does not (unreachable, misconfigured); models whose breaker is open are not routed to.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bandit_router import errors
from bandit_router.config import ModelSpec
from bandit_router.domain.metered import Metered
from bandit_router.domain.records import Decision
from bandit_router.domain.requests import MAX_FAILURE_CHARS, RewardInput, RouteInput
from bandit_router.observability.timing import SERVER_TIMING, current, phase, server_timing, timed
from bandit_router.observability.tracing import traced
from bandit_router.serving.affinity import STICKY, conversation_key, sticky
from bandit_router.serving.after_answer import Pin
from bandit_router.serving.router import RouterService
from bandit_router.transport.http.api import BUDGET_FIELDS, PREFERENCE_FIELDS, TENANT, route_input
from bandit_router.transport.http.backends import BackendFailure, BackendRefused, Backends, Call, Usage
from bandit_router.transport.http.body import Body, read_object, unknown
from bandit_router.transport.http.errors import ApiError, invalid
from bandit_router.transport.http.messages import ROUTER_MODEL, conversation_of, parse_router_model, query_of
from bandit_router.transport.http.tokenizers import Tokenizers

log = logging.getLogger(__name__)

DECISION_HEADER = "x-bandit-router-decision-id"
MODE_HEADER = "x-bandit-router-mode"
# The router's own fields of a request body: read by the gateway, not sent to the backend.
OWN_FIELDS = ("candidates", "budget", "task", "metadata", "preferences", "request_id", "conversation_id")
# Top-level fields that are the router's but misplaced (they belong in preferences or budget), or are the JSON
# API's: refused rather than forwarded, so the request is not served as if it had not asked. Any other field is
# OpenAI's (or the backend's own) and is forwarded as it is.
MISPLACED = (*PREFERENCE_FIELDS, *BUDGET_FIELDS, "query", "decision_id", "quality", "baseline", "conversation")


@functools.lru_cache(maxsize=1024)
def _misplaced(field: str) -> bool:
    """Whether a top-level field is a router field misplaced or misspelled (``energy_weight``, ``candidate``):
    field names repeat from request to request, so each is judged once."""
    if field in OWN_FIELDS:
        return False
    return field in MISPLACED or bool(difflib.get_close_matches(field, OWN_FIELDS, n=1, cutoff=0.8))


def _check_own_fields(body: Body, path: str) -> None:
    """Refuses a router field that is misplaced or misspelled, naming it and the router's own fields."""
    where = f"the body of /v1{path}: it belongs in preferences, in budget, or nowhere; the router's own fields"
    for field in body.raw:
        if _misplaced(field):
            unknown([field], OWN_FIELDS, where, raw=body.raw)


class Gateway:
    """``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` in front of the catalog's backends."""

    def __init__(self, service: RouterService, backends: Backends, tokenizers: Tokenizers | None = None) -> None:
        self.service = service
        self.backends = backends
        self.tokenizers = tokenizers or Tokenizers()
        self.config = service.config.http
        self.models = service.config.model_by_id

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.list_models)

    async def list_models(self, request: web.Request) -> web.Response:
        served = [m.id for m in self.service.list_models() if m.enabled and m.base_url]
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "bandit-router"} for name in [ROUTER_MODEL]]
        data += [{"id": name, "object": "model", "created": 0, "owned_by": "catalog"} for name in served]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        with traced("chat completion", request.headers), timed():
            return await self._complete(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        with traced("completion", request.headers), timed():
            return await self._complete(request, chat=False)

    def _backed(self, model_id: str) -> ModelSpec:
        spec = self.models[model_id]
        if not spec.base_url:
            raise invalid("model", "must name a model with a backend (models.base_url in the catalog)", model_id)
        return spec

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await read_object(request)
        name = body.text("model")
        if not name:
            raise invalid("model", "is required", name)
        stream = body.flag("stream")
        path = "/chat/completions" if chat else "/completions"
        _check_own_fields(body, path)
        upstream = {k: v for k, v in body.raw.items() if k not in OWN_FIELDS}
        preferences = parse_router_model(name)
        if preferences is None:
            if name not in self.models:
                known = ", ".join([ROUTER_MODEL, *(m for m in self.models if self.models[m].base_url)])
                raise ApiError(
                    404, f"model {name!r} does not exist (known: {known})", param="model", code="model_not_found"
                )
            model = self._backed(name)
            if self.service.config.rollout.mode_of(request[TENANT]) != "apprentice":
                return await self._pass_through(request, model, path, upstream, stream)
            # Apprentice mode: the model asked for is the baseline served, but for the exploration share.
            routed = dataclasses.replace(self._route_input(request, body, chat, {}), baseline=model.id)
            return await self._routed(request, routed, path, upstream, stream, None)
        routed = self._route_input(request, body, chat, preferences)
        return await self._routed(request, routed, path, upstream, stream, self._conversation(request, body, chat))

    def _conversation(self, request: web.Request, body: Body, chat: bool) -> tuple[str, bool] | None:
        """Where the request's conversation is pinned, and whether to look there (a chat's first turn is routed
        afresh, then pinned); None with affinity off or no conversation."""
        found = conversation_of(request, body, chat)
        if found is None or not self.config.affinity:
            return None
        explicit, opening, earlier = found
        return conversation_key(request[TENANT], explicit, opening), earlier

    def _route_input(self, request: web.Request, body: Body, chat: bool, preferences: dict[str, float]) -> RouteInput:
        query = query_of(body, chat, self.service.config.limits.max_query_chars)
        routed = route_input(body, request[TENANT], query=query)
        task = routed.task or request.headers.get("x-bandit-router-task", "")
        candidates = routed.candidates or tuple(
            c.strip() for c in request.headers.get("x-bandit-router-candidates", "").split(",") if c.strip()
        )
        if candidates:
            unbacked = [c for c in candidates if c in self.models and not self.models[c].base_url]
            if unbacked:
                raise invalid("candidates", "must be models with a backend (models.base_url)", unbacked)
        else:
            candidates = tuple(m.id for m in self.service.list_models() if m.enabled and m.base_url)
            if not candidates:
                raise errors.FailedPrecondition("no catalog model has a backend: set models.base_url")
        breakers = self.service.upstreams.breakers
        healthy = tuple(c for c in candidates if breakers.routable(c))
        if not healthy:
            raise ApiError(
                503,
                f"every candidate's backend is failing (breakers open: {', '.join(candidates)}); retry shortly",
                type="api_error",
                code="backends_unavailable",
            )
        candidates = healthy
        # Preferences in the body win over those the model name carries.
        energy = routed.energy_weight if routed.energy_weight is not None else preferences.get("energy_weight")
        cost = routed.cost_weight if routed.cost_weight is not None else preferences.get("cost_weight")
        return dataclasses.replace(routed, task=task, candidates=candidates, energy_weight=energy, cost_weight=cost)

    async def _routed(
        self,
        request: web.Request,
        routed: RouteInput,
        path: str,
        upstream: dict[str, Any],
        stream: bool,
        conversation: tuple[str, bool] | None,
    ) -> web.StreamResponse:
        """Routes (or, for a pinned conversation, stays on its model) and answers; after a backend failure, the
        next-best model answers, and a conversation is pinned to the decision that answered."""
        deadline = time.monotonic() + self.config.deadline_s
        failed: list[tuple[str, str]] = []
        pinned = None
        if conversation is not None and conversation[1]:
            pinned = await self.service.affinity.pinned(conversation[0])
            if pinned is not None and pinned.model not in routed.candidates:
                pinned = None  # the request no longer allows the conversation's model
        for _ in range(self.config.max_attempts):
            if pinned is not None:
                decision = sticky(pinned)
                self.service.monitor.metrics.sticky.inc()
            else:
                decision = await self.service.route(routed)
            model = self.models[decision.model]
            started = time.perf_counter()
            try:
                # A conversation's first turn (or one whose model failed) is pinned to the decision that answers.
                pin = (conversation[0], decision) if conversation is not None and pinned is None else None
                with phase("backend", model=model.id, decision_id=decision.decision_id, mode=decision.mode):
                    answer = await self._answer(
                        request, decision, routed.tenant, path, upstream, stream, failed, deadline, pin
                    )
                if not answer.prepared:  # a whole answer (a stream said its timing with its first chunk)
                    answer.headers[SERVER_TIMING] = server_timing(current())
                return answer
            except BackendFailure as exc:
                reason = str(exc)
                if exc.teaches:
                    await self._learn_failure(decision, reason, (time.perf_counter() - started) * 1000, routed.tenant)
                elif pinned is None:
                    # Unreachable or misconfigured: nothing about the model as a choice, so its decision is dropped
                    # unlearned (a conversation's pinned decision stays, for its other turns' feedback).
                    await self.service.drop(decision.decision_id)
                pinned = None  # the conversation's model failed: the next answers it, and it is pinned there
                failed.append((model.id, reason))
            left = tuple(c for c in routed.candidates if c not in {m for m, _ in failed})
            if not left or time.monotonic() >= deadline:
                break
            routed = dataclasses.replace(routed, candidates=left, request_id="")
        tried = "; ".join(f"{m}: {why}" for m, why in failed)
        raise ApiError(502, f"every model tried failed ({tried})", type="api_error", code="backends_failed")

    async def _learn_failure(self, decision: Decision, reason: str, latency_ms: float, tenant: str) -> None:
        failure = RewardInput(
            decision.decision_id, None, latency_ms=latency_ms, tenant=tenant, failure=reason[:MAX_FAILURE_CHARS]
        )
        try:
            await self.service.reward(failure)
        except errors.RouterError as exc:  # the decision then expires as any unrewarded one does
            log.warning("could not learn the failure of %s: %s", decision.decision_id, exc)

    async def _forward(
        self,
        request: web.Request,
        model: ModelSpec,
        sent: tuple[str, dict[str, Any], bool, float],
        headers: dict[str, str],
        extension: dict[str, Any] | None,
        on_call: Callable[[Call], Awaitable[Usage | None]],
    ) -> web.StreamResponse:
        """Calls ``model``'s backend (``sent``: path, body, stream, time budget) and answers with what it said, its
        ``model`` the catalog id and ``extension`` added (on a stream's first chunk); records the backend's health,
        then hands the measurement to ``on_call``. A failure before answering is recorded and raised."""
        path, upstream, stream, budget = sent
        decision_id = extension["decision_id"] if extension is not None else ""

        async def measured(call: Call) -> Usage | None:
            if call.broken:
                self.service.upstreams.failed(model.id, call.broken, request[TENANT], decision_id)
            else:
                self.service.upstreams.answered(model.id, call.latency_ms, call.first_token_ms, request[TENANT])
            return await on_call(call)

        def rewrite(chunk: dict[str, Any], first: bool) -> dict[str, Any]:
            chunk["model"] = model.id
            if first and extension is not None:
                chunk["bandit_router"] = extension
            return chunk

        try:
            if stream:
                return await self.backends.relay(model, path, upstream, budget, request, rewrite, headers, measured)
            payload, answered = await self.backends.answer(model, path, upstream, budget, request.headers)
        except BackendRefused as exc:
            # The backend refused the request itself (a 4xx): the model is not to blame, so nothing is learned (a
            # routed decision is dropped), and the caller gets the backend's own answer.
            if extension is not None and extension["mode"] != STICKY:
                await self.service.drop(decision_id)
            return web.Response(
                status=exc.status, body=exc.body, content_type=exc.content_type or None, headers=headers
            )
        except BackendFailure as exc:
            self.service.upstreams.failed(model.id, str(exc), request[TENANT], decision_id)
            raise
        await measured(answered)
        return web.json_response(rewrite(payload, True), headers=headers)

    async def _answer(
        self,
        request: web.Request,
        decision: Decision,
        tenant: str,
        path: str,
        upstream: dict[str, Any],
        stream: bool,
        failed: list[tuple[str, str]],
        deadline: float,
        pin: Pin | None,
    ) -> web.StreamResponse:
        """The routed model's answer; what the call measured is kept with the decision for its reward, and ``pin``
        written with it, once the answer has gone."""
        model = self.models[decision.model]
        budget = max(deadline - time.monotonic(), 0.001)
        extension = {
            "decision_id": decision.decision_id,
            "model": decision.model,
            "probability": decision.probability,
            "policy_version": decision.policy_version,
            "mode": decision.mode,
            "failed_before": [{"model": m, "reason": why} for m, why in failed],
        }
        headers = {DECISION_HEADER: decision.decision_id, "x-bandit-router-model": model.id, MODE_HEADER: decision.mode}
        chat = path == "/chat/completions"

        async def metered(call: Call) -> Usage | None:
            if call.broken:
                # Not pinned either: a conversation whose first answer broke off is routed afresh next turn.
                await self._learn_failure(decision, call.broken, call.latency_ms, tenant)
                return None
            answered_at = self.service.now()
            # No usage from the backend: counted with the model's tokenizer where the catalog names one.
            counted_in, counted_out = await self.tokenizers.count(
                model.id,
                upstream,
                chat,
                prompt=not call.input_tokens,
                answer="" if call.output_tokens else call.answer_text,
            )
            record = None
            if decision.mode != STICKY:  # a conversation's decision is priced from the turn that made it
                record = Metered(
                    model.id,
                    call.input_tokens,
                    call.output_tokens,
                    call.latency_ms,
                    call.first_token_ms,
                    tuple(failed),
                    answered_at=answered_at,
                    answer_chars=call.answer_chars,
                    input_counted=counted_in,
                    output_counted=counted_out,
                )
            self.service.keep_answered(decision.decision_id, record, pin)
            tokens = (call.input_tokens or counted_in, call.output_tokens or counted_out)
            return tokens if all(tokens) else None  # usage is told only where it was reported or counted

        return await self._forward(request, model, (path, upstream, stream, budget), headers, extension, metered)

    async def _pass_through(
        self, request: web.Request, model: ModelSpec, path: str, upstream: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        """A concrete model: no decision, but the call is metered into the backend's health."""

        async def nothing_more(call: Call) -> Usage | None:
            return None

        sent = (path, upstream, stream, self.config.deadline_s)
        try:
            return await self._forward(request, model, sent, {"x-bandit-router-model": model.id}, None, nothing_more)
        except BackendFailure as exc:
            raise ApiError(502, f"{model.id}: {exc}", type="api_error", code="backend_failed") from None
