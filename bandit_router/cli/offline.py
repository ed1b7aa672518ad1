"""The offline commands: warm start, off-policy evaluation, the decision log export, soak and the benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bandit_router.config import EMBEDDING_BACKENDS


def _warm_start(args: argparse.Namespace) -> int:
    from bandit_router.config import load_config
    from bandit_router.learning.warm_start import WarmStartError, run

    config = load_config(args.config)
    try:
        result = asyncio.run(run(config, args.source, task_hint=not args.no_task_hint))
    except (OSError, WarmStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = result.verdict
    print(f"warm-started policy v{result.policy.version} from {result.source}")
    for name, value in result.holdout.items():
        print(f"  held-out mean reward, {name}: {value:.4f}")
    if verdict.promoted:
        print(f"served: the gate promoted it ({verdict.reason})")
        return 0
    print(f"not served: the gate held it back ({verdict.reason}); it is the learner's checkpoint")
    return 1


def _evaluate(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from bandit_router.config import load_config
    from bandit_router.offline.evaluate import evaluate, judged, plot, read_dsjson, reweighted, table

    decisions, value = judged(read_dsjson(args.log), args.tenant)
    print(f"Estimates of {value}.")
    trade_offs: dict[str, list[Any]] = {"as logged": decisions}
    for text in args.weights:
        try:
            energy, cost = (float(v) for v in text.split(","))
            if not (energy >= 0 and cost >= 0):
                raise ValueError
        except ValueError:
            print(f"error: --weights must be two numbers >= 0 as ENERGY,COST, got {text!r}", file=sys.stderr)
            return 2
        scales = load_config(args.config).reward
        trade_offs[f"energy weight {energy:g}, cost weight {cost:g}"] = reweighted(decisions, energy, cost, scales)
    results = {label: evaluate(logged, [v.split() for v in args.vw], z=args.z) for label, logged in trade_offs.items()}
    tables = []
    for label, result in results.items():
        heading = f"Reward {label}:\n\n" if len(trade_offs) > 1 else ""
        tables.append(heading + table(result, len(decisions), args.min_support, args.min_ess))
    print("\n\n".join(tables))
    estimates = {
        label: {n: {k: dataclasses.asdict(e) for k, e in r.items()} for n, r in result.items()}
        for label, result in results.items()
    }
    if args.json:
        Path(args.json).write_text(json.dumps(estimates, indent=1))
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "evaluate.md").write_text(
            f"# Off-policy estimates from {args.log}\n\n{len(decisions)} decisions.\n\n" + "\n\n".join(tables) + "\n"
        )
        (folder / "evaluate.json").write_text(json.dumps(estimates, indent=1))
        written = [
            folder / "evaluate.md",
            folder / "evaluate.json",
            plot(results, folder / "evaluate.png", len(decisions)),
        ]
        print("wrote:\n" + "\n".join(f"  {p}" for p in written))
    return 0


def _export_log(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bandit_router.config import load_config
    from bandit_router.learning.decision_log import export

    log_dir = load_config(args.config).server.data_path / "decisions"
    count = export(log_dir, Path(args.out))
    print(f"wrote {count} decisions from {log_dir} to {args.out}")
    return 0


def _soak(args: argparse.Namespace) -> int:
    from bandit_router.bench.soak import run_soak

    reward = {name: value for name in ("wait_time_s", "retention_s") if (value := getattr(args, name)) is not None}
    result = asyncio.run(run_soak(args.duration, args.concurrency, args.json, reward=reward))
    return 0 if all(result["checks"].values()) else 1


def _memory_bench(args: argparse.Namespace) -> int:
    from bandit_router.bench.memory import run_memory_bench

    asyncio.run(run_memory_bench(args.pairs, args.unrewarded, args.config, args.json))
    return 0


def _capacity_bench(args: argparse.Namespace) -> int:
    from bandit_router.bench.capacity import run_capacity_bench

    asyncio.run(
        run_capacity_bench(
            args.replicas, args.pairs, args.unrewarded, args.concurrency, args.config, args.json, args.shards
        )
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bandit_router.bench.route import run_bench

    asyncio.run(
        run_bench(args.concurrency, args.requests, args.device, args.json, workers=args.workers, clients=args.clients)
    )
    return 0


def _gateway_bench(args: argparse.Namespace) -> int:
    from bandit_router.bench.gateway import run_gateway_bench

    asyncio.run(
        run_gateway_bench(
            args.concurrency, args.requests, args.backend_delay_ms, args.device, args.json, tuple(args.variants)
        )
    )
    return 0


def _embedding_build(args: argparse.Namespace) -> int:
    import dataclasses

    from bandit_router.config import load_config
    from bandit_router.embedding.backends import load_embedder

    config = load_config(args.config).embedding
    for backend in args.backends or [config.backend]:
        embedder = load_embedder(dataclasses.replace(config, backend=backend, device="cpu"))
        print(f"embedding backend {backend}: ready ({embedder.model_name})")
        embedder.close()
    return 0


def _embedding_bench(args: argparse.Namespace) -> int:
    from bandit_router.bench.embedding import run_embedding_bench

    run_embedding_bench(args.backends, args.runs, args.json)
    return 0


COMMANDS = {
    "warm-start": _warm_start,
    "evaluate": _evaluate,
    "export-log": _export_log,
    "soak": _soak,
    "bench": _bench,
    "gateway-bench": _gateway_bench,
    "memory-bench": _memory_bench,
    "capacity-bench": _capacity_bench,
    "embedding-bench": _embedding_bench,
    "embedding-build": _embedding_build,
}


def add_parsers(commands: Any) -> None:
    export = commands.add_parser("export-log", help="write the decisions the learner has learned as DSJSON")
    export.add_argument("--config", help="TOML configuration file (its server.data_dir holds the log)")
    export.add_argument("--out", required=True, help="DSJSON file to write")

    evaluate = commands.add_parser("evaluate", help="off-policy estimates of candidate policies from a DSJSON log")
    evaluate.add_argument("log", help="DSJSON written by export-log")
    evaluate.add_argument(
        "--tenant",
        default=None,
        help="estimate this tenant's reward on its own decisions (a log of several tenants is otherwise estimated "
        "on quality, pooled)",
    )
    evaluate.add_argument(
        "--vw", action="append", default=[], help="a candidate VW policy's arguments, quoted; may be repeated"
    )
    evaluate.add_argument(
        "--z", type=float, default=1.96, help="interval half-width in standard errors (default: %(default)s)"
    )
    evaluate.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="ENERGY,COST",
        help="also estimate every candidate under these reward weights (e.g. 0,0 or 1,1); may be repeated",
    )
    evaluate.add_argument("--config", help="TOML configuration whose reward scales --weights uses")
    evaluate.add_argument("--json", help="also write the estimates to this file")
    evaluate.add_argument(
        "--min-support",
        type=float,
        default=0.95,
        help="a policy is estimated only where this share of the decisions supports it (default: %(default)s)",
    )
    evaluate.add_argument(
        "--min-ess",
        type=float,
        default=30.0,
        help="...and its weights' effective sample size reaches this (default: %(default)s)",
    )
    evaluate.add_argument(
        "--out", help="folder to write evaluate.md, evaluate.json and evaluate.png (the estimates and intervals)"
    )
    warm = commands.add_parser(
        "warm-start",
        help="fit the policy from an evaluation set or a DSJSON log and serve it (through the quality gate) "
        "before any live traffic",
    )
    warm.add_argument("source", help="traffic-format evaluation set (every model's outcome) or DSJSON log")
    warm.add_argument("--config", help="TOML configuration file (the store and data directory to write to)")
    warm.add_argument(
        "--no-task-hint", action="store_true", help="infer each prompt's task, as Route does for queries without one"
    )
    soak = commands.add_parser(
        "soak", help="Route + Reward against a router process for a bounded time; checks errors, memory, learning"
    )
    soak.add_argument("--duration", type=float, default=300.0, help="seconds of load (default: %(default)s)")
    soak.add_argument("--concurrency", type=int, default=32, help="clients (default: %(default)s)")
    soak.add_argument("--json", help="also write the figures to this file")
    soak.add_argument("--wait-time-s", type=float, help="the router's reward.wait_time_s (short: Redis settles sooner)")
    soak.add_argument("--retention-s", type=float, help="the router's reward.retention_s (short: Redis settles sooner)")

    gateway = commands.add_parser(
        "gateway-bench", help="measure what the OpenAI-compatible gateway adds to a call, against the backend direct"
    )
    gateway.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    gateway.add_argument("--requests", type=int, default=400, help="chat completions per concurrency level and path")
    gateway.add_argument("--backend-delay-ms", type=float, default=20.0, help="the scripted backend's time per answer")
    gateway.add_argument("--device", default="auto", help="embedding device: auto, cpu, cuda")
    gateway.add_argument("--json", help="also write the figures to this file")
    gateway.add_argument(
        "--variants",
        nargs="+",
        choices=["default", "no-affinity", "tracing", "torch", "onnx", "static"],
        default=["default"],
        help="router variants to measure, one router process each (tracing needs the otel extra)",
    )
    memory = commands.add_parser("memory-bench", help="measure the Redis memory each sustained route/s holds")
    memory.add_argument("--pairs", type=int, default=1000, help="Route + Reward pairs (default: %(default)s)")
    memory.add_argument("--unrewarded", type=int, default=100, help="Routes never rewarded (default: %(default)s)")
    memory.add_argument("--config", help="TOML configuration whose reward and redis settings are measured")
    memory.add_argument("--json", help="also write the figures to this file")
    capacity = commands.add_parser(
        "capacity-bench",
        help="measure what a route costs routers, Redis and the learner on a loopback Redis Cluster, and project it",
    )
    capacity.add_argument("--replicas", type=int, default=3, help="routing replicas (default: %(default)s)")
    capacity.add_argument("--pairs", type=int, default=600, help="Route + Reward pairs (default: %(default)s)")
    capacity.add_argument("--unrewarded", type=int, default=60, help="Routes never rewarded (default: %(default)s)")
    capacity.add_argument("--concurrency", type=int, default=16, help="calls at once (default: %(default)s)")
    capacity.add_argument("--shards", type=int, default=1, help="redis.shards (default: %(default)s)")
    capacity.add_argument("--config", help="TOML configuration whose settings are measured")
    capacity.add_argument("--json", help="also write the figures to this file")
    build = commands.add_parser(
        "embedding-build",
        help="build what the embedding backend needs from the model (once; a container image does it at build time)",
    )
    build.add_argument("--backends", nargs="+", choices=EMBEDDING_BACKENDS, help="(default: embedding.backend)")
    build.add_argument("--config", help="TOML configuration (default: the shipped one)")
    embedding = commands.add_parser(
        "embedding-bench", help="measure each embedding backend: time per query, throughput, memory, agreement"
    )
    embedding.add_argument(
        "--backends", nargs="+", choices=EMBEDDING_BACKENDS, default=list(EMBEDDING_BACKENDS), help="(default: all)"
    )
    embedding.add_argument(
        "--runs", type=int, default=3, help="alternated runs of every backend (default: %(default)s)"
    )
    embedding.add_argument("--json", help="also write the figures to this file")
    bench = commands.add_parser("bench", help="measure Route latency and throughput against the embedding alone")
    bench.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    bench.add_argument("--requests", type=int, default=400, help="Route calls per concurrency level")
    bench.add_argument("--device", default="auto", help="embedding device: auto, cpu, cuda")
    bench.add_argument("--json", help="also write the figures to this file")
    bench.add_argument(
        "--workers", type=int, default=1, help="routing processes of the server under test (serve --workers)"
    )
    bench.add_argument("--clients", type=int, default=1, help="load-generating processes that share each level's calls")
