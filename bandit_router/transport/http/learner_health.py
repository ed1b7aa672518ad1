"""The separate learner's probes over HTTP: ``/livez`` (its loop comes round), ``/readyz`` (learning or on standby)."""

from __future__ import annotations

import json
import time

from aiohttp import web

from bandit_router.learning.learner import Learner

# Live while the loop came round this recently: a step waits at most a few seconds on Redis (its socket timeout,
# a blocking read, a standby's wait), so a loop silent this long is stuck (a hung VW call, a deadlock).
LIVE_WITHIN_S = 60.0


def _state(learner: Learner) -> dict[str, object]:
    return {
        "role": learner.role,
        "name": learner.name,
        "token": learner.fence.token if learner.fence is not None else None,
        "policy_version": learner.policy.version,
        "learned": learner.published,
        "problem": learner.problem,
        "since_last_round_s": round(time.monotonic() - learner.went_round, 3),
    }


def health_app(learner: Learner, live_within_s: float = LIVE_WITHIN_S) -> web.Application:
    """``/livez``: 200 while the learner's loop comes round (else 503: restart it); ``/readyz``: 200 while it
    holds the lease and learns, or stands by, with nothing failing (else 503, with the problem)."""

    async def livez(request: web.Request) -> web.Response:
        state = _state(learner)
        live = time.monotonic() - learner.went_round <= live_within_s
        return web.json_response(state, status=200 if live else 503, dumps=json.dumps)

    async def readyz(request: web.Request) -> web.Response:
        state = _state(learner)
        return web.json_response(state, status=200 if learner.problem is None else 503, dumps=json.dumps)

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_health(learner: Learner, listen: str) -> tuple[web.AppRunner, str]:
    """Serves the probes on ``listen`` (HOST:PORT; plain HTTP, for the kubelet); returns the runner, which the
    caller cleans up, and the URL with the bound port."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(health_app(learner), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, int(port)).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, f"http://{host}:{runner.addresses[0][1]}/"
