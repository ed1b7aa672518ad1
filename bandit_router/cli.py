"""The ``bandit-router`` command: serve, the route/reward/models clients, and the benchmark."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

DEFAULT_TARGET = "127.0.0.1:50051"


def _client_call(args: argparse.Namespace, method: str, request: Any) -> dict[str, Any]:
    from pathlib import Path

    from bandit_router.v1 import router_pb2_grpc

    if args.ca_cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(args.ca_cert).read_bytes())
        channel = grpc.secure_channel(args.target, credentials)
    else:
        channel = grpc.insecure_channel(args.target)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    with channel:
        stub = router_pb2_grpc.RouterStub(channel)
        reply = getattr(stub, method)(request, timeout=30, metadata=metadata)
    return _as_json(reply)


def _as_json(message: Any) -> dict[str, Any]:
    """The message as JSON the way a person reads it: int64 fields as numbers (protobuf's JSON mapping writes
    them as strings), and each Unix time ``*_at`` beside it as an ISO time."""
    import datetime

    from google.protobuf.descriptor import FieldDescriptor

    body = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    for field in message.DESCRIPTOR.fields:
        value = body.get(field.name)
        if value is None:
            continue
        if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
            body[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and field.message_type.GetOptions().map_entry is False:
            items = getattr(message, field.name)
            if isinstance(value, list):
                body[field.name] = [_as_json(item) for item in items]
            else:
                body[field.name] = _as_json(items)
        elif field.name.endswith("_at") and isinstance(value, float) and value > 0:
            when = datetime.datetime.fromtimestamp(value, datetime.UTC)
            body[f"{field.name}_iso"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return body


def _metadata(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    return key, value


def _route(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    request = pb.RouteRequest(
        query=args.text,
        request_id=args.request_id,
        candidates=args.candidates,
        task=args.task,
        metadata=dict(args.metadata),
    )
    if args.energy_weight is not None:
        request.preferences.energy_weight = args.energy_weight
    if args.cost_weight is not None:
        request.preferences.cost_weight = args.cost_weight
    for name, value in (
        ("max_cost_usd", args.max_cost),
        ("max_energy_joules", args.max_energy),
        ("max_latency_ms", args.max_latency),
    ):
        if value is not None:
            setattr(request.budget, name, value)
    return _client_call(args, "Route", request)


def _reward(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    request = pb.RewardRequest(
        decision_id=args.decision_id,
        quality=args.quality,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        latency_ms=args.latency_ms,
    )
    if args.energy_joules is not None:
        request.energy_joules = args.energy_joules
    if args.cost_usd is not None:
        request.cost_usd = args.cost_usd
    return _client_call(args, "Reward", request)


def _stats(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    return _client_call(args, "GetStats", pb.GetStatsRequest())


def _models(args: argparse.Namespace) -> dict[str, Any]:
    from bandit_router.v1 import router_pb2 as pb

    return _client_call(args, "ListModels", pb.ListModelsRequest())


def _convert(args: argparse.Namespace) -> int:
    from bandit_router.offline.replay.convert import check_data, from_llmrouter, from_routeprofile
    from bandit_router.offline.replay.traffic import write_traffic

    check_data(args.dataset, args.data, args.split)
    records = from_llmrouter(args.data, args.split) if args.dataset == "llmrouter" else from_routeprofile(args.data)
    count = write_traffic(records, args.out)
    print(f"wrote {count} records to {args.out}")
    return 0


def _split(records: list[Any], fraction: float | None) -> tuple[list[Any], list[Any]]:
    """The first ``fraction`` of the records (to warm-start from) and the rest (to route)."""
    if not fraction:
        return [], records
    cut = round(len(records) * fraction)
    return records[:cut], records[cut:]


def _replay(args: argparse.Namespace) -> int:
    import dataclasses
    from importlib import resources

    from bandit_router.config import load_config
    from bandit_router.embedding.cache import CachingEmbedder
    from bandit_router.embedding.model import Embedder
    from bandit_router.offline.replay import report
    from bandit_router.offline.replay.run import SWEEP_WEIGHTS, ReplaySettings, replay
    from bandit_router.offline.replay.scenario import Scenario, ScenarioError, load_scenario
    from bandit_router.offline.replay.traffic import TrafficError, read_traffic
    from bandit_router.offline.warm_start import Source, WarmStartError, read_source
    from bandit_router.runtime.root import stop_on_signals

    config = load_config(getattr(args, "config", None))
    if args.command == "demo":
        source = resources.files("bandit_router.data").joinpath("sample_traffic.jsonl")
        with resources.as_file(source) as path:
            records = read_traffic(path)
        # Shuffled once, so the warm-start half and the routed half mix the tasks alike.
        random.Random(0).shuffle(records)
        settings, title = ReplaySettings(), "bandit-router demo: RouteProfile sample"
        warm_part, routed = _split(records, 0.5)
        runs = [
            ("cold", f"{title}, cold start", records, settings),
            (
                "warm",
                f"{title}, warm start on the other half",
                routed,
                dataclasses.replace(
                    settings,
                    warm_start=Source(
                        f"{len(warm_part)} of the {len(records)} sample prompts (every model's outcome), disjoint from "
                        "the routed ones",
                        records=tuple(warm_part),
                    ),
                ),
            ),
        ]
    else:
        if args.split is not None and not 0 < args.split < 1:
            print(f"error: --split must be in (0, 1), got {args.split}", file=sys.stderr)
            return 2
        try:
            records = read_traffic(args.traffic, args.limit)
            if args.shuffle:
                random.Random(args.seed).shuffle(records)
            warm_part, records = _split(records, args.split)
            scenario = load_scenario(args.scenario, records) if args.scenario else Scenario()
            warm_from = read_source(args.warm_start, config) if args.warm_start else None
        except (OSError, TrafficError, ScenarioError, WarmStartError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        warm_start = None
        if warm_part or warm_from is not None:
            parts = [f"the first {len(warm_part)} records of {args.traffic}"] if warm_part else []
            parts += [warm_from.description] if warm_from is not None else []
            warm_start = Source(
                " and ".join(parts),
                records=(*warm_part, *(warm_from.records if warm_from else ())),
                logged=warm_from.logged if warm_from else (),
            )
            if warm_start.records and warm_start.logged:
                print("error: --split and a DSJSON --warm-start cannot be combined", file=sys.stderr)
                return 2
        settings = ReplaySettings(
            args.energy_weight,
            args.cost_weight,
            args.seed,
            args.concurrency,
            not args.no_task_hint,
            scenario,
            warm_start,
        )
        runs = [("", f"Replay of {args.traffic}", records, settings)]
    sweep = getattr(args, "sweep", False)

    async def run() -> tuple[list[dict[str, Any]], dict[float, dict[str, Any]]]:
        # One embedding model, and each query embedded once, for every replay here.
        embedder = CachingEmbedder(
            await asyncio.to_thread(Embedder, config.embedding),
            getattr(args, "embedding_cache", None),
            config.embedding.head_tokens,
        )
        results: list[dict[str, Any]] = []
        for i, (folder, title, stream, at) in enumerate(runs):
            last = i == len(runs) - 1
            out = f"{args.out}/{folder}" if folder else args.out

            async def hold(result: dict[str, Any], out: str = out, title: str = title) -> None:
                _show(report, result, out, title)
                _headline([*results, result])
                print("\nThe router and its dashboard stay up until Ctrl-C.", file=sys.stderr)
                with stop_on_signals() as stop:
                    await stop.wait()

            keep = hold if getattr(args, "hold", False) and not sweep and last else None
            result = await replay(stream, config, at, embedder, on_start=_announce, hold=keep)
            if keep is None:
                _show(report, result, out, title)
            results.append(result)
        swept = {}
        for weight in SWEEP_WEIGHTS if sweep else ():
            print(f"sweep: energy weight = cost weight = {weight:g}", file=sys.stderr)
            at = dataclasses.replace(settings, energy_weight=weight, cost_weight=weight)
            swept[weight] = await replay(records, config, at, embedder)
        embedder.close()
        return results, swept

    results, swept = asyncio.run(run())
    if swept:
        written = report.write_sweep(swept, args.out, runs[0][1])
        print("\n".join(f"  {path}" for path in written))
    if not getattr(args, "hold", False) or sweep:
        _headline(results)
    if config.dashboard.listen and not getattr(args, "hold", False):
        print("The dashboard ran while the replay did; `bandit-router demo --hold` keeps it up afterwards.")
    return 0


def _headline(results: list[dict[str, Any]]) -> None:
    """The bandit against the best single model in hindsight, per run (cold, then warm for the demo)."""
    from bandit_router.offline.replay.run import BANDIT

    print()
    for result in results:
        policies = result["policies"]
        bandit = policies[BANDIT]["mean_reward"]
        best_name, best = next((n, p["mean_reward"]) for n, p in policies.items() if n.startswith("best single"))
        how = "warm-started" if "warm_start" in result else "cold-started"
        verdict = "beats" if bandit > best else "does not beat"
        print(
            f"{how} bandit-router: mean reward {bandit:.4f} on {result['records']} routed queries, {verdict} the "
            f"{best_name} ({best:.4f}; ratio {bandit / best:.3f})"
            if best > 0
            else f"{how}: {bandit:.4f}"
        )


def _announce(server: Any) -> None:
    if server.dashboard is not None:
        print(f"dashboard: {server.dashboard.url} (metrics: {server.dashboard.url}metrics)", file=sys.stderr)


def _show(report: Any, result: dict[str, Any], out: str, title: str) -> None:
    written = report.write(result, out, title)
    print(f"\n{title}\n")
    print("\n".join(report.table_rows(result)))
    print(f"\n{result['replay_queries_per_second']:.1f} queries/s; energy {result['energy_source']}; wrote:")
    for path in written:
        print(f"  {path}")


def _warm_start(args: argparse.Namespace) -> int:
    from bandit_router.config import load_config
    from bandit_router.offline.warm_start import WarmStartError, run

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
    from bandit_router.offline.evaluate import evaluate, plot, read_dsjson, reweighted, table

    decisions = read_dsjson(args.log)
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
        tables.append(heading + table(result, len(decisions)))
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
        written = [folder / "evaluate.md", folder / "evaluate.json", plot(results, folder / "evaluate.png")]
        print("wrote:\n" + "\n".join(f"  {p}" for p in written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="bandit-router", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('bandit-router')}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the router (embedded Redis unless REDIS_URL is set)")
    serve.add_argument("--config", help="TOML configuration file (default: the shipped defaults)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="routing processes sharing the port (SO_REUSEPORT), with the learner in this one (default: 1)",
    )

    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--target", default=DEFAULT_TARGET, help="router address (default: %(default)s)")
    target.add_argument(
        "--token",
        default=os.environ.get("BANDIT_ROUTER_TOKEN", ""),
        help="bearer token, when the router asks for one (default: $BANDIT_ROUTER_TOKEN)",
    )
    target.add_argument("--ca-cert", help="PEM certificate to trust: connect with TLS")

    route = commands.add_parser("route", parents=[target], help="route one query and print the decision as JSON")
    route.add_argument("text")
    route.add_argument("--task", default="")
    route.add_argument("--request-id", default="")
    route.add_argument("--candidates", nargs="*", default=[])
    route.add_argument("--energy-weight", type=float)
    route.add_argument("--cost-weight", type=float)
    route.add_argument("--max-cost", type=float, metavar="USD", help="budget: most expected cost of the answer")
    route.add_argument("--max-energy", type=float, metavar="JOULES", help="budget: most expected energy")
    route.add_argument("--max-latency", type=float, metavar="MS", help="budget: most expected latency")
    route.add_argument(
        "--metadata",
        type=_metadata,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata stored with the decision (logged, exported); may be repeated",
    )

    reward = commands.add_parser(
        "reward", parents=[target], help="send the reward of a decision and print the reply as JSON"
    )
    reward.add_argument("decision_id")
    reward.add_argument("quality", type=float)
    reward.add_argument("--input-tokens", type=int, default=0)
    reward.add_argument("--output-tokens", type=int, default=0)
    reward.add_argument("--latency-ms", type=float, default=0.0)
    reward.add_argument("--energy-joules", type=float)
    reward.add_argument("--cost-usd", type=float)

    commands.add_parser("models", parents=[target], help="print the catalog the router chooses from")
    commands.add_parser(
        "stats", parents=[target], help="print the policy's state, running estimates and the router's energy"
    )

    agent = commands.add_parser(
        "energy-agent", help="publish this node's GPU energy counters to the routers' Redis (REDIS_URL)"
    )
    agent.add_argument("--config", help="TOML configuration file (energy and redis sections are read)")
    agent.add_argument(
        "--node", help="node name the catalog uses for this host (default: energy.node, else the host name)"
    )
    agent.add_argument("--gpus", type=int, nargs="*", help="GPU indices (default: all)")
    agent.add_argument("--interval", type=float, help="seconds between samples (default: energy.sample_interval_s)")

    export = commands.add_parser("export-log", help="write the decisions the learner has learned as DSJSON")
    export.add_argument("--config", help="TOML configuration file (its server.data_dir holds the log)")
    export.add_argument("--out", required=True, help="DSJSON file to write")

    evaluate = commands.add_parser("evaluate", help="off-policy estimates of candidate policies from a DSJSON log")
    evaluate.add_argument("log", help="DSJSON written by export-log")
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
        "--out", help="folder to write evaluate.md, evaluate.json and evaluate.png (the estimates and intervals)"
    )

    convert = commands.add_parser("convert", help="convert a public outcome dataset to the traffic format")
    convert.add_argument("dataset", choices=["llmrouter", "routeprofile"])
    convert.add_argument("--data", required=True, help="the dataset's folder (e.g. ../shared/data/llmrouter)")
    convert.add_argument("--split", default="test", help="llmrouter only: train or test (default: %(default)s)")
    convert.add_argument("--out", required=True, help="traffic file to write (JSON Lines)")

    replay = commands.add_parser("replay", help="replay a traffic file through the router and the baselines")
    replay.add_argument("traffic")
    replay.add_argument("--out", required=True, help="folder for report.json, report.md and the plots")
    replay.add_argument("--energy-weight", type=float)
    replay.add_argument("--cost-weight", type=float)
    replay.add_argument("--seed", type=int, default=0)
    replay.add_argument("--limit", type=int, help="replay only the first N records")
    replay.add_argument("--concurrency", type=int, default=8, help="Route calls in flight (default: %(default)s)")
    replay.add_argument("--no-task-hint", action="store_true", help="let the router infer each query's task")
    replay.add_argument("--shuffle", action="store_true", help="replay the records in an order shuffled with --seed")
    replay.add_argument(
        "--sweep",
        action="store_true",
        help="also replay at energy weight = cost weight in 0, 0.1, 0.3, 1, 3 and plot quality against cost "
        "and energy (pareto.png, sweep.md)",
    )
    replay.add_argument(
        "--scenario", help="YAML drift scenario: price changes, degradation, models added or removed, lost rewards"
    )
    replay.add_argument(
        "--warm-start",
        metavar="FILE",
        help="fit the router first from FILE: an evaluation set in the traffic format (every model's outcome) or "
        "a DSJSON decision log (export-log); evaluation rows warm-start the baselines too",
    )
    replay.add_argument(
        "--split",
        type=float,
        metavar="FRACTION",
        help="warm-start from the first FRACTION of the (shuffled) traffic and route the rest",
    )
    replay.add_argument("--config", help="TOML configuration (catalog, VW arguments, reward scales)")

    demo = commands.add_parser("demo", help="replay the bundled sample of real traffic and print the results")
    demo.add_argument(
        "--out", default="bandit-router-demo", help="folder for the report and plots (default: %(default)s)"
    )
    for parser_ in (replay, demo):
        parser_.add_argument(
            "--hold", action="store_true", help="after the replay, keep the router and its dashboard up until Ctrl-C"
        )
        parser_.add_argument(
            "--embedding-cache",
            metavar="PATH",
            help="SQLite file of embeddings by model and text, reused across runs (default: in memory only)",
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

    learner = commands.add_parser(
        "learner", help="run the learner alone, for routing replicas (serve with server.learner = false)"
    )
    learner.add_argument("--config", help="TOML configuration file; redis.url (or REDIS_URL) is required")

    soak = commands.add_parser(
        "soak", help="Route + Reward against a router process for a bounded time; checks errors, memory, learning"
    )
    soak.add_argument("--duration", type=float, default=300.0, help="seconds of load (default: %(default)s)")
    soak.add_argument("--concurrency", type=int, default=32, help="clients (default: %(default)s)")
    soak.add_argument("--json", help="also write the figures to this file")

    bench = commands.add_parser("bench", help="measure Route latency and throughput against the embedding alone")
    bench.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    bench.add_argument("--requests", type=int, default=400, help="Route calls per concurrency level")
    bench.add_argument("--device", default="auto", help="embedding device: auto, cpu, cuda")
    bench.add_argument("--json", help="also write the figures to this file")
    bench.add_argument(
        "--workers", type=int, default=1, help="routing processes of the server under test (serve --workers)"
    )
    bench.add_argument("--clients", type=int, default=1, help="load-generating processes that share each level's calls")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except BrokenPipeError:
        # `bandit-router stats | head`: the reader has gone. Point stdout at /dev/null so that the interpreter's
        # own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _user_error(exc)
        if message is None or args.log_level.upper() == "DEBUG":
            raise
        # What was started is stopped by now (each command's own cleanup ran on the way out).
        print(f"error: {message}", file=sys.stderr)
        return 2


def _user_error(exc: BaseException) -> str | None:
    """The one line to print for an error the user can fix (a file, a flag, a setting, an unreachable
    server), or None for a bug, whose traceback is worth seeing."""
    from bandit_router.errors import InputError
    from bandit_router.store.embedded import EmbeddedRedisError, RedisUnreachable

    if isinstance(exc, (InputError, RedisUnreachable, EmbeddedRedisError)):
        return str(exc)
    if isinstance(exc, OSError):
        # A taken port, a missing file, a data directory another router's Redis holds.
        return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
    if isinstance(exc, RuntimeError) and str(exc):
        return str(exc)
    return None


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        if args.workers > 1:
            from bandit_router.runtime.workers import run_workers

            return asyncio.run(run_workers(args.config, args.workers))
        from bandit_router.config import load_config
        from bandit_router.runtime.root import serve

        asyncio.run(serve(load_config(args.config)))
        return 0
    if args.command == "learner":
        from bandit_router.config import load_config
        from bandit_router.runtime.root import run_learner, stop_on_signals

        async def learn() -> None:
            with stop_on_signals() as stop:
                await run_learner(load_config(args.config), stop)

        asyncio.run(learn())
        return 0
    if args.command == "soak":
        from bandit_router.offline.soak import run_soak

        result = asyncio.run(run_soak(args.duration, args.concurrency, args.json))
        return 0 if all(result["checks"].values()) else 1
    if args.command == "bench":
        from bandit_router.offline.bench import run_bench

        asyncio.run(
            run_bench(
                args.concurrency, args.requests, args.device, args.json, workers=args.workers, clients=args.clients
            )
        )
        return 0
    if args.command == "convert":
        return _convert(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "export-log":
        from pathlib import Path

        from bandit_router.config import load_config
        from bandit_router.learning.decision_log import export

        log_dir = load_config(args.config).server.data_path / "decisions"
        count = export(log_dir, Path(args.out))
        print(f"wrote {count} decisions from {log_dir} to {args.out}")
        return 0
    if args.command in ("replay", "demo"):
        return _replay(args)
    if args.command == "warm-start":
        return _warm_start(args)
    if args.command == "energy-agent":
        from bandit_router.energy.agent import run_agent
        from bandit_router.runtime.root import stop_on_signals

        async def publish() -> int:
            with stop_on_signals() as stop:
                return await run_agent(args.config, args.node, args.gpus, args.interval, stop)

        return asyncio.run(publish())
    handler = {"route": _route, "reward": _reward, "models": _models, "stats": _stats}[args.command]
    try:
        print(json.dumps(handler(args), indent=2))
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
