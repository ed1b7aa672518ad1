"""Benchmark: Route latency and throughput through a real gRPC server, against the embedding alone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bandit_router.bench.learner import learner_throughput
from bandit_router.bench.load import LoadProcesses, free_port, queries, summarize, wait_serving
from bandit_router.config import load_config
from bandit_router.embedding.pool import available_cpus, in_workers
from bandit_router.runtime.workers import start_embedding_servers


def _progress(what: str, level: int, figures: dict[str, float]) -> dict[str, float]:
    """Prints one measurement as soon as it is taken (to stderr), so a run cut short still leaves its figures."""
    print(
        f"  {what} at concurrency {level}: p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, "
        f"{figures['per_s']:.1f}/s",
        file=sys.stderr,
        flush=True,
    )
    return figures


async def _wait_workers(log_path: Path, workers: int, timeout: float) -> None:
    """Waits until every routing worker has logged that it serves: a late one would get no connections."""
    deadline = time.monotonic() + timeout
    while log_path.read_text().count("bandit-router serving on") < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {workers} routing workers were serving after {timeout} s")
        await asyncio.sleep(0.2)


async def _bench_route(
    results: dict[str, Any], texts: list[str], levels: list[int], device: str, workers: int, clients: int, channels: int
) -> None:
    """Route latency and throughput at each level, against a ``serve --workers`` process; its energy figures."""
    from bandit_router.v1 import router_pb2 as pb
    from bandit_router.v1 import router_pb2_grpc

    with tempfile.TemporaryDirectory(prefix="br-bench-") as data_dir:
        target = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "BANDIT_ROUTER_SERVER_LISTEN": target,
            "BANDIT_ROUTER_SERVER_DATA_DIR": data_dir,
            "BANDIT_ROUTER_EMBEDDING_DEVICE": device,
            "BANDIT_ROUTER_DASHBOARD_LISTEN": "127.0.0.1:0",
            "BANDIT_ROUTER_HTTP_LISTEN": "127.0.0.1:0",
        }
        log_path = Path(data_dir) / "server.log"
        command = [sys.executable, "-m", "bandit_router", "serve", "--workers", str(workers)]
        with open(log_path, "w") as log:
            server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        load = None
        try:
            await wait_serving(target, timeout=120)
            await _wait_workers(log_path, workers, timeout=300)
            setup = {"mode": "route", "target": target, "channels": channels}
            load = LoadProcesses([setup] * clients)
            await load.ready()
            inference_joules: list[float] = []
            for level in levels:
                parts, joules = await load.level(texts, level)
                results["levels"].setdefault(str(level), {})["route"] = _progress("Route", level, summarize(parts))
                inference_joules += joules
            async with grpc.aio.insecure_channel(target) as channel:
                stats = await router_pb2_grpc.RouterStub(channel).GetStats(pb.GetStatsRequest())
            results["router_energy"] = {
                "queries_embedded": stats.queries_embedded,
                "embedding_energy_joules": stats.embedding_energy_joules,
                "source": pb.Source.Name(stats.embedding_energy_source),
                "basis": stats.embedding_energy_basis,
                "mean_estimated_inference_joules": statistics.fmean(inference_joules),
            }
        except Exception:
            print(log_path.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            if load is not None:
                load.close()
            server.terminate()
            server.wait(timeout=60)


async def _bench_embedding(
    results: dict[str, Any], texts: list[str], levels: list[int], device: str, workers: int
) -> dict[str, str]:
    """The embedding alone at each level, in each arrangement there is; returns the arrangements' names."""
    # The embedding alone, through the same batching at the same concurrency, with the embedding settings
    # the server read (file and environment) on the same device, in each arrangement there is: the model on
    # a thread of the load process, worker processes of its own, and (with several workers) the shared
    # embedding servers the router's workers use. Each figure of the ceiling is the best of them, so the
    # router is held to the best the embedding alone can do.
    config = dataclasses.replace(load_config().embedding, device=device)
    arrangements = ["thread"] + (["processes"] if in_workers(config) else [])
    arrangements += ["shared"] if in_workers(config) and config.shared and workers > 1 else []
    names = {
        "thread": "thread",
        "processes": f"{config.processes} processes",
        "shared": f"{config.processes} shared servers",
    }
    for arrangement in arrangements:
        with tempfile.TemporaryDirectory(prefix="br-embed-") as shared_dir:
            shared = start_embedding_servers(config, shared_dir) if arrangement == "shared" else []
            setup = {"mode": arrangement, "device": device, "shared_dir": shared_dir if shared else ""}
            load = LoadProcesses([setup] * workers)
            facts = (await load.ready())[0]
            results["device"], results["embedding_model"] = facts["device"], facts["model"]
            for level in levels:
                parts, _ = await load.level(texts, level)
                figures = _progress(f"embedding alone on {names[arrangement]}", level, summarize(parts))
                results["levels"][str(level)][f"embedding ({names[arrangement]})"] = figures
            load.close()
            for embedding_server in shared:
                embedding_server.close()
    for figures in results["levels"].values():
        alone = [f for key, f in figures.items() if key.startswith("embedding (")]
        figures["embedding"] = {
            "p50_ms": min(f["p50_ms"] for f in alone),
            "p99_ms": min(f["p99_ms"] for f in alone),
            "per_s": max(f["per_s"] for f in alone),
        }

    return {a: names[a] for a in arrangements}


def _print_table(
    results: dict[str, Any], names: dict[str, str], requests: int, workers: int, clients: int, channels: int
) -> None:
    per_worker = "" if workers == 1 else " in each of as many processes as the router has workers"
    print(
        f"bandit-router bench: {requests} Route calls per level from {clients} load process(es) over {channels} "
        f"connection(s) each, to {workers} routing worker(s); embedding on {results['device']}, "
        f"{available_cpus()} CPUs; the embedding alone is the best of: "
        f"{', '.join(names.values())}{per_worker}"
    )
    route_head = f"{'Route p50':>9} {'p99':>8} {'per s':>8}"
    embed_head = f"{'embed p50':>9} {'p99':>8} {'per s':>8}"
    print(f"{'concurrency':>11} | {route_head} | {embed_head} | {'p50 over':>8} {'tput ratio':>10}")
    for level, figures in results["levels"].items():
        r, e = figures["route"], figures["embedding"]
        figures["p50_overhead_ms"] = r["p50_ms"] - e["p50_ms"]
        figures["throughput_ratio"] = r["per_s"] / e["per_s"]
        print(
            f"{level:>11} | {r['p50_ms']:8.2f}ms {r['p99_ms']:6.2f}ms {r['per_s']:8.1f} | "
            f"{e['p50_ms']:8.2f}ms {e['p99_ms']:6.2f}ms {e['per_s']:8.1f} | "
            f"{figures['p50_overhead_ms']:6.2f}ms {figures['throughput_ratio']:10.2f}"
        )
    for name in names.values():
        key = f"embedding ({name})"
        row = ", ".join(
            f"{level}: {f[key]['p50_ms']:.2f}ms {f[key]['per_s']:.1f}/s" for level, f in results["levels"].items()
        )
        print(f"  embedding alone on {name}: {row}")


def _print_energy(energy: dict[str, Any]) -> None:
    if energy["source"] == "SOURCE_MEASURED" and energy["queries_embedded"]:
        per_query = energy["embedding_energy_joules"] / energy["queries_embedded"]
        inference = energy["mean_estimated_inference_joules"]
        energy["embedding_joules_per_query"] = per_query
        print(f"router's own embedding energy: {per_query:.4f} J per query, measured ({energy['basis']})")
        print(
            f"inference energy of the routed models: {inference:.1f} J per query, estimated from the catalog's "
            f"ML.ENERGY profiles; routing adds {100 * per_query / inference:.3f}% to it"
        )
    else:
        print(f"router's own embedding energy: {energy['basis']}")


async def run_bench(
    levels: list[int],
    requests: int,
    device: str,
    json_path: str | None,
    workers: int = 1,
    clients: int = 1,
) -> dict[str, Any]:
    """Route through ``serve --workers workers`` from ``clients`` load processes, then the embedding alone.

    The embedding alone runs in as many processes as the router has workers, each with its share of the
    concurrency, so it is held to the same arrangement of processes as the router.
    """
    texts = queries(requests)
    results: dict[str, Any] = {"requests_per_level": requests, "workers": workers, "clients": clients, "levels": {}}
    # One connection per client process suffices for one worker; several workers need several per worker
    # for SO_REUSEPORT's hash to spread them.
    channels = 1 if workers == 1 else max(1, -(-4 * workers // clients))
    await _bench_route(results, texts, levels, device, workers, clients, channels)
    names = await _bench_embedding(results, texts, levels, device, workers)
    _print_table(results, names, requests, workers, clients, channels)
    _print_energy(results["router_energy"])
    learning = await learner_throughput()
    results["learner"] = learning
    print(
        f"learner: {learning['per_s']:.0f} rewards learned per second ({learning['events']} events from a Redis "
        "stream, snapshots, quality gate and acknowledgements included)"
    )
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    return results
