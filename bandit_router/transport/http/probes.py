"""Backend health probes: every backend checked at start, so a misconfigured one stops the start with its fix; the
backends of open breakers probed while running, so a restored backend is routed again within seconds."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from bandit_router.config import ConfigError, ModelSpec
from bandit_router.serving.breakers import Breakers
from bandit_router.transport.http.backends import MISCONFIGURED, Backends

log = logging.getLogger(__name__)


def _fix(model: ModelSpec, status: int) -> str:
    key = f"models[{model.id}]"
    if status in (401, 403):
        return f"the backend refused its API key: check the variable {key}.api_key_env names ({model.api_key_env!r})"
    if not model.base_url.rstrip("/").endswith("/v1"):
        return f"an OpenAI-compatible base URL ends in /v1: set {key}.base_url to {model.base_url.rstrip('/')}/v1"
    return f"set {key}.health_path to a path the backend serves, or to an empty string to skip the check"


async def check_at_start(backends: Backends, models: Sequence[ModelSpec], breakers: Breakers) -> None:
    """Raises ConfigError for a backend that cannot work as configured (an unset API key variable; a probe answered
    401, 403, 404 or 405); a backend that cannot be reached now is only logged, and its breaker opened."""
    backed = [m for m in models if m.base_url and m.enabled]
    for model in backed:
        if model.api_key_env and not os.environ.get(model.api_key_env):
            raise ConfigError(
                f"models[{model.id}].api_key_env: the environment variable {model.api_key_env} is not set: export "
                "it, or remove api_key_env for a backend that takes no key"
            )
    probed = [m for m in backed if m.health_path]
    answers = await asyncio.gather(*(backends.probe(m) for m in probed))
    for model, answer in zip(probed, answers, strict=True):
        url = model.base_url.rstrip("/") + model.health_path
        if isinstance(answer, int) and answer in MISCONFIGURED:
            raise ConfigError(f"models[{model.id}].base_url: GET {url} answered {answer}: {_fix(model, answer)}")
        if isinstance(answer, str) or answer >= 400:
            why = answer if isinstance(answer, str) else f"HTTP {answer}"
            log.warning(
                "backend of %s is not answering at start (GET %s: %s): not routed until it does", model.id, url, why
            )
            breakers.trip(model.id, f"start-up probe: {why}")
        else:
            log.info("backend of %s answers (GET %s: %d)", model.id, url, answer)


async def probe_open(backends: Backends, models: Sequence[ModelSpec], breakers: Breakers, every_s: float) -> None:
    """Forever: every ``every_s``, probes the backend of each model whose breaker is open; one that answers (below
    400) after a probe found it unreachable is routed again at once (half open: its next call is the trial)."""
    by_id = {m.id: m for m in models if m.base_url and m.health_path}
    while True:
        await asyncio.sleep(every_s)
        due = [by_id[m] for m in breakers.open_models() if m in by_id]
        answers = await asyncio.gather(*(backends.probe(m) for m in due))
        for model, answer in zip(due, answers, strict=True):
            if isinstance(answer, int) and answer < 400:
                breakers.probed(model.id)
            else:
                breakers.unreachable(model.id)
