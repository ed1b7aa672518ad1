"""``Client`` and ``AsyncClient``: Route, Reward and failures over HTTP, with timeouts, TLS, tokens and retries.

Only idempotent calls are retried (on a refused connection, a timeout, or a 503): a Route always carries a
``request_id`` (generated unless given), so a retried Route answers the same decision; a Reward is retried as
is, and a retry that finds it already rewarded says its first attempt may have counted.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from bandit_router.client.types import AlreadyRewarded, ApiError, Decision, RewardResult, Unavailable, error_of

DEFAULT_URL = "http://127.0.0.1:8000"
_RETRIED_STATUS = frozenset({502, 503, 504})
_TRANSIENT = (httpx.TransportError,)


def _route_body(
    query: str,
    request_id: str | None,
    energy_weight: float | None,
    cost_weight: float | None,
    candidates: list[str] | tuple[str, ...] | None,
    task: str | None,
    budget: Mapping[str, float] | None,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "request_id": request_id or uuid.uuid4().hex}
    preferences = {k: v for k, v in (("energy_weight", energy_weight), ("cost_weight", cost_weight)) if v is not None}
    if preferences:
        body["preferences"] = preferences
    if candidates:
        body["candidates"] = list(candidates)
    if task:
        body["task"] = task
    if budget:
        body["budget"] = dict(budget)
    if metadata:
        body["metadata"] = dict(metadata)
    return body


def _finite(field: str, value: float | None) -> None:
    """Refuses a number JSON cannot carry (NaN, infinity) before it is sent; the server checks the rest."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")


def _reward_body(decision_id: str, quality: float, **figures: Any) -> dict[str, Any]:
    _finite("quality", quality)
    for name, value in figures.items():
        _finite(name, value)
    return {"decision_id": decision_id, "quality": quality, **{k: v for k, v in figures.items() if v is not None}}


class _Base:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        verify: bool | str = True,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https:// (e.g. http://{base_url.split('://')[-1]}), "
                f"got {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._options: dict[str, Any] = {"timeout": timeout_s, "verify": verify, "headers": self._headers}

    def _outcome(self, response: httpx.Response, attempt: int, path: str) -> Any:
        """The body of a successful answer; raises the API's error, or None to retry."""
        if response.status_code == 200:
            return response.json()
        if response.status_code in _RETRIED_STATUS and attempt < self.retries:
            return None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        error = error_of(response.status_code, body, rewarding=path != "/v1/route")
        if isinstance(error, AlreadyRewarded) and attempt > 0:
            # A retried Reward may find its own first attempt learned, that attempt's answer lost on the way.
            note = " (perhaps by this call's earlier attempt, whose answer was lost)"
            error = AlreadyRewarded(error.status, error.message + note, error.code, error.param)
        raise error

    def _gave_up(self, exc: Exception) -> ApiError:
        return Unavailable(503, f"no answer from {self.base_url} after {self.retries + 1} attempts: {exc}")


class Client(_Base):
    """Synchronous client: ``Client("http://router:8000", token=...)``; close it, or use it as a context manager."""

    def __init__(self, base_url: str = DEFAULT_URL, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.Client(**self._options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                outcome = self._outcome(self._http.post(self.base_url + path, json=body), attempt, path)
            except _TRANSIENT as exc:
                if attempt == self.retries:
                    raise self._gave_up(exc) from exc
                outcome = None
            if outcome is not None:
                return outcome
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def route(
        self,
        query: str,
        *,
        energy_weight: float | None = None,
        cost_weight: float | None = None,
        candidates: list[str] | tuple[str, ...] | None = None,
        task: str | None = None,
        budget: Mapping[str, float] | None = None,
        metadata: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """The model to call for ``query`` at this trade-off (unset weights: the server's defaults)."""
        body = _route_body(query, request_id, energy_weight, cost_weight, candidates, task, budget, metadata)
        return Decision.from_json(self._post("/v1/route", body))

    def reward(
        self,
        decision_id: str,
        quality: float,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: float | None = None,
        energy_joules: float | None = None,
        cost_usd: float | None = None,
    ) -> RewardResult:
        """The answer's quality in [0, 1], with what the call used where known (the rest is estimated)."""
        body = _reward_body(
            decision_id,
            quality,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            energy_joules=energy_joules,
            cost_usd=cost_usd,
        )
        return RewardResult.from_json(self._post("/v1/reward", body))

    def fail(self, decision_id: str, reason: str, *, latency_ms: float | None = None) -> RewardResult:
        """The model call errored or timed out: learned as a failure, so traffic moves off a broken model."""
        body: dict[str, Any] = {"decision_id": decision_id, "reason": reason}
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        return RewardResult.from_json(self._post("/v1/fail", body))


class AsyncClient(_Base):
    """Asynchronous client, the same calls awaited: ``async with AsyncClient(url) as client: ...``."""

    def __init__(self, base_url: str = DEFAULT_URL, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._http = httpx.AsyncClient(**self._options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                outcome = self._outcome(await self._http.post(self.base_url + path, json=body), attempt, path)
            except _TRANSIENT as exc:
                if attempt == self.retries:
                    raise self._gave_up(exc) from exc
                outcome = None
            if outcome is not None:
                return outcome
            await asyncio.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def route(
        self,
        query: str,
        *,
        energy_weight: float | None = None,
        cost_weight: float | None = None,
        candidates: list[str] | tuple[str, ...] | None = None,
        task: str | None = None,
        budget: Mapping[str, float] | None = None,
        metadata: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Decision:
        body = _route_body(query, request_id, energy_weight, cost_weight, candidates, task, budget, metadata)
        return Decision.from_json(await self._post("/v1/route", body))

    async def reward(
        self,
        decision_id: str,
        quality: float,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: float | None = None,
        energy_joules: float | None = None,
        cost_usd: float | None = None,
    ) -> RewardResult:
        body = _reward_body(
            decision_id,
            quality,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            energy_joules=energy_joules,
            cost_usd=cost_usd,
        )
        return RewardResult.from_json(await self._post("/v1/reward", body))

    async def fail(self, decision_id: str, reason: str, *, latency_ms: float | None = None) -> RewardResult:
        body: dict[str, Any] = {"decision_id": decision_id, "reason": reason}
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        return RewardResult.from_json(await self._post("/v1/fail", body))
