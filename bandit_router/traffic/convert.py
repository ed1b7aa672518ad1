"""Converters from the public per-query outcome datasets to the traffic format."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from bandit_router.errors import InputError
from bandit_router.traffic.format import Outcome, Record

# Where each dataset comes from, and the files of it a conversion reads.
ORIGINS = {
    "llmrouter": "LLMRouter (https://github.com/ulab-uiuc/LLMRouter, MIT licence)",
    "routeprofile": "RouteProfile (https://github.com/ulab-uiuc/RouteProfile, MIT licence)",
}


class ConvertError(InputError):
    """The dataset folder lacks a file the conversion reads; the message says where the data come from."""


def required_files(dataset: str, split: str = "test") -> list[str]:
    if dataset == "llmrouter":
        return [f"query_data/default_query_{split}.jsonl", f"dcrouter_preprocessed/{split}.json"]
    return ["profile_data/candidate_models.json", "route_data/routing_test_data.json"]


def check_data(dataset: str, data_dir: str | Path, split: str = "test") -> None:
    """Raises ConvertError naming the first file of the dataset missing under ``data_dir``."""
    root = Path(data_dir)
    for name in required_files(dataset, split):
        if not (root / name).is_file():
            raise ConvertError(
                f"--data {str(data_dir)!r} has no {name}: point --data at a copy of {ORIGINS[dataset]}, which "
                f"holds {' and '.join(required_files(dataset, split))} (a sample of RouteProfile ships with "
                "bandit-router: `bandit-router demo` replays it)"
            )


def from_llmrouter(data_dir: str | Path, split: str = "test") -> Iterator[Record]:
    """LLMRouter (ulab-uiuc/LLMRouter, MIT): quality per model from ``dcrouter_preprocessed/{split}.json``,
    task names joined on the exact query text from ``query_data/default_query_{split}.jsonl``. It has no
    token counts, so cost and energy are left for the catalog to estimate."""
    root = Path(data_dir)
    tasks: dict[str, str] = {}
    with open(root / "query_data" / f"default_query_{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a few lines of the published file are not single-line JSON
            tasks.setdefault(row["query"], row["task_name"])
    rows = json.loads((root / "dcrouter_preprocessed" / f"{split}.json").read_text(encoding="utf-8"))
    for number, row in enumerate(rows):
        outcomes = {model: Outcome(quality=min(max(float(q), 0.0), 1.0)) for model, q in row["scores"].items()}
        yield Record(f"llmrouter-{split}-{number}", row["question"], tasks.get(row["question"], ""), outcomes)


def from_routeprofile(data_dir: str | Path) -> Iterator[Record]:
    """RouteProfile (ulab-uiuc/RouteProfile, MIT): quality, real prompt and completion tokens per model,
    and cost as those tokens times the model's listed prices."""
    root = Path(data_dir)
    prices = json.loads((root / "profile_data" / "candidate_models.json").read_text(encoding="utf-8"))
    rows = json.loads((root / "route_data" / "routing_test_data.json").read_text(encoding="utf-8"))
    for number, row in enumerate(rows):
        outcomes = {}
        for model, perf in row["model_performance"].items():
            tokens_in, tokens_out = int(perf["prompt_tokens"]), int(perf["completion_tokens"])
            price = prices[model]
            cost = (tokens_in * price["input_price"] + tokens_out * price["output_price"]) / 1e6
            outcomes[model] = Outcome(
                quality=min(max(float(perf["task_performance"]), 0.0), 1.0),
                cost_usd=cost,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        yield Record(f"routeprofile-{row['task_name']}-{number}", row["query"], row["task_name"], outcomes)


def shared_sets() -> dict[str, Callable[[Path], Iterator[Record]]]:
    """The shared data folder's sets by name (each reads its records from the folder), as the simulations use them."""
    return {
        "routeprofile": lambda data: from_routeprofile(data / "routeprofile"),
        "llmrouter-test": lambda data: from_llmrouter(data / "llmrouter", "test"),
        "llmrouter-train": lambda data: from_llmrouter(data / "llmrouter", "train"),
    }
