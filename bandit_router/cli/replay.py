"""The replay commands: convert a public data set, replay traffic through the router, and the demo."""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
from typing import Any

from bandit_router.offline.replay.cadence import DEFAULT_ANSWER_S, DEFAULT_RATE


def _convert(args: argparse.Namespace) -> int:
    from bandit_router.traffic.convert import check_data, from_llmrouter, from_routeprofile
    from bandit_router.traffic.format import write_traffic

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


Run = tuple[str, str, list[Any], Any]  # (folder under --out, title, records routed, ReplaySettings)


# The demo's control group: this share of its third run's queries is served uniformly at random.
DEMO_CONTROL_SHARE = 0.1


def _demo_runs() -> list[Run]:
    """The demo's runs on the vendored sample: cold on all of it; warm on half, routing the other; and cold again
    with a control group, which measures routing as a live deployment would."""
    import dataclasses
    from importlib import resources

    from bandit_router.learning.warm_start import Source
    from bandit_router.offline.replay.settings import ReplaySettings
    from bandit_router.traffic.format import read_traffic

    source = resources.files("bandit_router.data").joinpath("sample_traffic.jsonl")
    with resources.as_file(source) as path:
        records = read_traffic(path)
    # Shuffled once, so the warm-start half and the routed half mix the tasks alike.
    random.Random(0).shuffle(records)
    settings, title = ReplaySettings(), "bandit-router demo: RouteProfile sample"
    warm_part, routed = _split(records, 0.5)
    warm_start = Source(
        f"{len(warm_part)} of the {len(records)} sample prompts (every model's outcome), disjoint from the routed ones",
        records=tuple(warm_part),
    )
    return [
        ("cold", f"{title}, cold start", records, settings),
        (
            "warm",
            f"{title}, warm start on the other half",
            routed,
            dataclasses.replace(settings, warm_start=warm_start),
        ),
        (
            "control",
            f"{title}, cold start with {DEMO_CONTROL_SHARE:.0%} of the queries served uniformly at random",
            records,
            dataclasses.replace(settings, control_share=DEMO_CONTROL_SHARE),
        ),
    ]


def _replay_runs(args: argparse.Namespace, config: Any) -> list[Run]:
    """The one run ``replay`` asks for; raises InputError for flags, files or a scenario that break a rule."""
    from bandit_router.errors import InputError
    from bandit_router.learning.warm_start import Source, read_source
    from bandit_router.offline.replay.settings import ReplaySettings
    from bandit_router.traffic.format import read_traffic
    from bandit_router.traffic.scenario import Scenario, load_scenario

    if args.split is not None and not 0 < args.split < 1:
        raise InputError(f"--split must be in (0, 1), got {args.split}")
    if args.control_share is not None and not 0 <= args.control_share <= 0.5:
        raise InputError(f"--control-share must be in [0, 0.5], got {args.control_share}")
    try:
        records = read_traffic(args.traffic, args.limit)
        if args.shuffle:
            random.Random(args.seed).shuffle(records)
        warm_part, records = _split(records, args.split)
        scenario = load_scenario(args.scenario, records) if args.scenario else Scenario()
        warm_from = read_source(args.warm_start, config) if args.warm_start else None
    except OSError as exc:
        raise InputError(str(exc)) from None
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
            raise InputError("--split and a DSJSON --warm-start cannot be combined")
    settings = ReplaySettings(
        args.energy_weight,
        args.cost_weight,
        args.seed,
        args.rate,
        args.answer_s,
        not args.no_task_hint,
        scenario,
        warm_start,
        args.control_share,
    )
    return [("", f"Replay of {args.traffic}", records, settings)]


async def _run_all(args: argparse.Namespace, config: Any, runs: list[Run], sweep: bool) -> list[dict[str, Any]]:
    """The sweep's replays of the first run's records (where asked), then every run; one embedder, each query
    embedded once. The closing lines are printed once all is done (before a held run waits)."""
    import dataclasses

    from bandit_router.embedding.backends import load_embedder
    from bandit_router.embedding.cache import CachingEmbedder
    from bandit_router.offline.replay import report
    from bandit_router.offline.replay.run import SWEEP_WEIGHTS, replay
    from bandit_router.runtime.process import stop_on_signals

    embedder = CachingEmbedder(
        await asyncio.to_thread(load_embedder, config.embedding),
        getattr(args, "embedding_cache", None),
        config.embedding.head_tokens,
    )
    swept: dict[float, dict[str, Any]] = {}
    for weight in SWEEP_WEIGHTS if sweep else ():
        print(f"sweep: energy weight = cost weight = {weight:g}", file=sys.stderr)
        at = dataclasses.replace(runs[0][3], energy_weight=weight, cost_weight=weight)
        swept[weight] = await replay(runs[0][2], config, at, embedder, show_progress=False)
    if swept:
        written = report.write_sweep(swept, args.out, runs[0][1])
        print("\n".join(f"  {path}" for path in written))
    results: list[dict[str, Any]] = []
    for i, (folder, title, stream, at) in enumerate(runs):
        last = i == len(runs) - 1
        out = f"{args.out}/{folder}" if folder else args.out

        async def hold(result: dict[str, Any], out: str = out, title: str = title) -> None:
            _show(report, result, out, title)
            _closing([*results, result], swept)
            print("\nThe router and its dashboard stay up until Ctrl-C.", file=sys.stderr)
            with stop_on_signals() as stop:
                await stop.wait()

        keep = hold if getattr(args, "hold", False) and last else None
        result = await replay(stream, config, at, embedder, on_start=_announce, hold=keep)
        if keep is None:
            _show(report, result, out, title)
        results.append(result)
    embedder.close()
    if not getattr(args, "hold", False):
        _closing(results, swept)
    return results


def _replay(args: argparse.Namespace) -> int:
    from bandit_router.config import load_config

    config = load_config(getattr(args, "config", None))
    demo = args.command == "demo"
    runs = _demo_runs() if demo else _replay_runs(args, config)
    asyncio.run(_run_all(args, config, runs, sweep=not args.no_sweep if demo else args.sweep))
    if config.dashboard.listen and not getattr(args, "hold", False):
        print("The dashboard ran while the replay did; `bandit-router demo --hold` keeps it up afterwards.")
    return 0


def _closing(results: list[dict[str, Any]], swept: dict[float, dict[str, Any]]) -> None:
    """Each run's position against every single model on reward, quality, energy and cost; then the sweep's,
    wins and losses alike."""
    from bandit_router.offline.replay import position

    print()
    for result in results:
        how = "warm-started" if "warm_start" in result else "cold-started"
        how += ", with a control group" if "control" in result else ""
        weights = result["reward"]
        print(
            f"{how}, {result['records']} routed queries, energy weight {weights['energy_weight']:g}, cost weight "
            f"{weights['cost_weight']:g}: {position.headline(result)}"
        )
        if "control" in result:
            print(f"  {position.control_line(result['control'])}")
        for line in position.against_each(result["policies"]):
            print(f"  {line}")
    if swept:
        first = next(iter(swept.values()))
        print(f"\nsweep, cold on the same {first['records']} queries, energy weight = cost weight = w:")
        for line in position.sweep_lines(swept):
            print(f"  {line}")
    print(
        "\nEvery single model's figures above are measured, not estimated: the traffic holds every query's outcome "
        "under every model. A live deployment has only its control group (rollout.control_share) to say the same, "
        "and on a stream this short its interval is wide."
    )


def _announce(server: Any) -> None:
    http = f", HTTP {server.http.url}v1/" if server.http is not None else ""
    print(f"router: gRPC {server.address} (bandit-router route --target {server.address} ...){http}", file=sys.stderr)
    if server.dashboard is not None:
        print(f"dashboard: {server.dashboard.url} (metrics: {server.dashboard.url}metrics)", file=sys.stderr)


def _show(report: Any, result: dict[str, Any], out: str, title: str) -> None:
    written = report.write(result, out, title)
    print(f"\n{title}\n")
    print("\n".join(report.table_rows(result)))
    print(f"\nIn virtual time at {result['cadence']['time']}; energy {result['energy_source']}; wrote:")
    for path in written:
        print(f"  {path}")


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


COMMANDS = {"convert": _convert, "replay": _replay, "demo": _replay}


def add_parsers(commands: Any) -> None:
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
    replay.add_argument(
        "--rate",
        type=_positive,
        default=DEFAULT_RATE,
        help="the traffic rate in queries/s the replay assumes in virtual time, where the records carry no "
        "timestamps: rewards come back and policies are served on the schedule the live router would have at it "
        "(default: %(default)s)",
    )
    replay.add_argument(
        "--answer-s",
        type=_non_negative,
        default=DEFAULT_ANSWER_S,
        help="seconds, in virtual time, from a query to its reward (default: %(default)s)",
    )
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
    replay.add_argument(
        "--control-share",
        type=float,
        metavar="SHARE",
        help="serve this share of the queries by rollout.control (uniform random unless configured) and report "
        "routing against it as the dashboard's control group would (default: the configuration's "
        "rollout.control_share)",
    )
    replay.add_argument("--config", help="TOML configuration (catalog, VW arguments, reward scales)")

    demo = commands.add_parser("demo", help="replay the bundled sample of real traffic and print the results")
    demo.add_argument(
        "--out", default="bandit-router-demo", help="folder for the report and plots (default: %(default)s)"
    )
    demo.add_argument(
        "--no-sweep", action="store_true", help="skip the sweep of trade-offs (energy weight = cost weight = w)"
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
