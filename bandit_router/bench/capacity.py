"""Capacity: what one route costs each part of a deployment, measured on loopback, and what that predicts at scale.

Several routing replicas and one learner share a three-master Redis Cluster (every key under one hash tag, so on
one shard). First the replicas route and reward ``pairs`` queries (and route ``unrewarded`` more) with the learner
stopped: the router's CPU and the Redis commands and CPU of Route and Reward. Then the learner drains the stream:
its rewards per second and its Redis commands per reward. Then every key is weighed (as ``memory-bench`` does):
Redis bytes per sustained route/s. The model multiplies those per-route figures by a rate and says which part runs
out first: routers scale out, but one learner learns every reward and one shard holds every key of a deployment.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bandit_router.bench.cluster import LocalCluster
from bandit_router.bench.load import queries
from bandit_router.bench.memory import per_route, weigh, write_figures
from bandit_router.config import Config, load_config
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.backends import load_embedder
from bandit_router.runtime.root import build_learner, open_router
from bandit_router.serving.router import RouterService

RATES = (1_000, 10_000, 100_000)
# What one of each part can give: one Redis shard is one thread (a core, kept below 80% for latency); one learner.
SHARD_CORES = 0.8
IDLE_S = 2.0
GIB = 2**30


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def _merged(weighed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Key families weighed under several prefixes (the shards'), added up by family."""
    families: dict[str, dict[str, Any]] = {}
    for by_family in weighed:
        for name, entry in by_family.items():
            into = families.setdefault(name, {"keys": 0, "bytes": 0, "max_ttl_s": None})
            into["keys"] += entry["keys"]
            into["bytes"] += entry["bytes"]
            if entry["max_ttl_s"] is not None:
                into["max_ttl_s"] = max(into["max_ttl_s"] or 0.0, entry["max_ttl_s"])
    return families


def _phase(wall_s: float, cpu_s: float, redis: dict[str, float], idle_cpu_per_s: float) -> dict[str, Any]:
    """One phase's figures, the Redis CPU less what the nodes spend idle over as long."""
    redis = {**redis, "cpu_s": max(0.0, redis.get("cpu_s", 0.0) - idle_cpu_per_s * wall_s)}
    return {"wall_s": wall_s, "cpu_s": cpu_s, "redis": redis}


async def _traffic(replicas: list[RouterService], texts: list[str], rewarded: int, concurrency: int) -> None:
    """Routes every text (round robin over the replicas) and rewards the first ``rewarded``, ``concurrency`` at once."""
    numbered = iter(enumerate(texts))

    async def worker() -> None:
        for i, text in numbered:
            service = replicas[i % len(replicas)]
            decision = await service.route(RouteInput(text))
            if i < rewarded:
                await service.reward(RewardInput(decision.decision_id, quality=0.8, input_tokens=50, output_tokens=200))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def simulate(
    config: Config, replicas: int, pairs: int, unrewarded: int, concurrency: int, shards: int = 1
) -> dict[str, Any]:
    """Runs the loopback deployment and measures it; see the module's docstring."""
    texts = queries(pairs + unrewarded, seed=13)
    embedder = await asyncio.to_thread(load_embedder, config.embedding)
    with tempfile.TemporaryDirectory(prefix="br-capacity-") as folder:
        async with LocalCluster(Path(folder) / "cluster", masters=3) as cluster:
            base = config.replace(
                redis={"url": cluster.url, "key_prefix": "{capacity}", "shards": shards},
                server={"learner": False},
                dashboard={"listen": ""},
                http={"listen": ""},
            )
            services = [
                await open_router(base.replace(server={"data_dir": f"{folder}/replica{i}"}), embedder=embedder)
                for i in range(replicas)
            ]
            try:
                # Warm: the scripts loaded on the shard, the model's first call made.
                await _traffic(services, queries(2 * replicas, seed=17), 2 * replicas, replicas)
                # What the cluster's nodes spend idle (their cron, the cluster bus, the replicas' polls), taken off
                # the busy figures, which would otherwise put seconds of background on a short run's routes.
                idle, wall0 = await cluster.stats(), time.perf_counter()
                await asyncio.sleep(IDLE_S)
                before, cpu0, wall1 = await cluster.stats(), time.process_time(), time.perf_counter()
                idle_cpu_per_s = (before["cpu_s"] - idle["cpu_s"]) / (wall1 - wall0)
                wall0 = wall1
                await _traffic(services, texts, pairs, concurrency)
                after, cpu1, wall1 = await cluster.stats(), time.process_time(), time.perf_counter()
                routing = _phase(wall1 - wall0, cpu1 - cpu0, _delta(after, before), idle_cpu_per_s)
                store = services[0].store
                learner_config = base.replace(server={"data_dir": f"{folder}/learner"})
                learner = await build_learner(learner_config, store, embedder.dimension, lambda p: None, None, None)
                learned_before = 2 * replicas
                cpu0, wall0 = time.process_time(), time.perf_counter()
                learner.start()
                try:
                    await learner.wait_learned(learned_before + pairs, timeout=max(600.0, pairs / 10))
                    cpu1, wall1 = time.process_time(), time.perf_counter()
                finally:
                    await learner.stop(60)
                learned = _delta(await cluster.stats(), after)
                learning = _phase(wall1 - wall0, cpu1 - cpu0, learned, idle_cpu_per_s)
                families = _merged(
                    [await weigh(store.client, p) for p in {base.redis.key_prefix, *(s.prefix for s in store.shards)}]
                )
            finally:
                for service in services:
                    await service.close()
    memory = per_route(families, pairs, unrewarded)
    return {
        "replicas": replicas,
        "pairs": pairs,
        "unrewarded": unrewarded,
        "concurrency": concurrency,
        "shards": shards,
        "routing": routing,
        "learning": learning,
        "families": families,
        **memory,
        **figures(routing, learning, pairs, unrewarded),
    }


def figures(routing: dict[str, Any], learning: dict[str, Any], pairs: int, unrewarded: int) -> dict[str, Any]:
    """The per-route inputs of the model: a route here is one Route and, for ``pairs`` of them, one Reward."""
    routes = pairs + unrewarded
    redis_routing, redis_learning = routing["redis"], learning["redis"]
    return {
        "router_cpu_ms_per_route": 1000 * routing["cpu_s"] / routes,
        "routes_per_s_loopback": routes / routing["wall_s"],
        "redis_commands_per_route": (redis_routing["total"] + redis_learning.get("total", 0.0)) / routes,
        "redis_commands_routing": {k: v / routes for k, v in redis_routing.items() if k not in ("total", "cpu_s")},
        "redis_commands_learning": {k: v / pairs for k, v in redis_learning.items() if k not in ("total", "cpu_s")},
        "redis_cpu_us_per_route": 1e6 * (redis_routing["cpu_s"] + redis_learning.get("cpu_s", 0.0)) / routes,
        "learner_rewards_per_s": pairs / learning["wall_s"],
    }


def project(result: dict[str, Any], rates: tuple[int, ...] = RATES) -> list[dict[str, Any]]:
    """Each part's load at each rate (routes/s, every route rewarded), as a share of what one of it gives where
    only one can serve a deployment (the learner; a Redis shard, of which there are ``redis.shards``, each with its
    share of the routes), and what runs out first."""
    rows = []
    for rate in rates:
        loads = {
            "learner": rate / result["learner_rewards_per_s"],
            "redis shard CPU": rate * result["redis_cpu_us_per_route"] / 1e6 / SHARD_CORES / result.get("shards", 1),
        }
        rows.append(
            {
                "rate": rate,
                "router_cores": rate * result["router_cpu_ms_per_route"] / 1000,
                "redis_commands_per_s": rate * result["redis_commands_per_route"],
                "redis_gib": rate * result["total_bytes_per_route_per_s"] / GIB,
                "loads": loads,
                "first": max(loads, key=lambda k: loads[k]),
            }
        )
    return rows


def show(result: dict[str, Any]) -> None:
    print(
        f"capacity on loopback: {result['replicas']} routing replicas and one learner on a 3-master Redis Cluster, "
        f"{result.get('shards', 1)} shard(s); {result['pairs']} Route+Reward pairs and {result['unrewarded']} Routes "
        "never rewarded, "
        f"{result['concurrency']} at once, all in this process"
    )
    routing = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["redis_commands_routing"].items()))
    learning = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result["redis_commands_learning"].items()))
    print(
        f"router: {result['router_cpu_ms_per_route']:.2f} CPU-ms per route, embedding included "
        f"({1000 / result['router_cpu_ms_per_route']:.0f} routes/s per core; {result['routes_per_s_loopback']:.0f} "
        "routes/s here)"
    )
    print(
        f"Redis: {result['redis_commands_per_route']:.2f} commands run per route, those inside scripts included "
        f"(routing, per route: {routing}; learner, per reward: {learning}); "
        f"{result['redis_cpu_us_per_route']:.0f} us of Redis CPU per route beyond its idle use"
    )
    print(f"Redis memory: {result['total_bytes_per_route_per_s'] / 1e6:.2f} MB per sustained route/s")
    print(f"learner: {result['learner_rewards_per_s']:.0f} rewards/s (one process, snapshots and gate included)")
    print(f"{'routes/s':>9} {'router cores':>13} {'Redis cmds/s':>13} {'Redis GiB':>10} {'learner':>8} "
          f"{'shard CPU':>10}  runs out first")  # fmt: skip
    for row in project(result):
        loads = row["loads"]
        verdict = row["first"] if loads[row["first"]] >= 1 else f"nothing yet (most: {row['first']})"
        print(
            f"{row['rate']:>9,} {row['router_cores']:>13.1f} {row['redis_commands_per_s']:>13,.0f} "
            f"{row['redis_gib']:>10.2f} {loads['learner']:>7.0%} {loads['redis shard CPU']:>10.0%}  {verdict}"
        )


async def run_capacity_bench(
    replicas: int,
    pairs: int,
    unrewarded: int,
    concurrency: int,
    config_path: str | None = None,
    json_path: str | None = None,
    shards: int = 1,
) -> dict[str, Any]:
    result = await simulate(load_config(config_path), replicas, pairs, unrewarded, concurrency, shards)
    result["projection"] = project(result)
    show(result)
    write_figures(result, json_path)
    return result
