"""Embedding backends side by side: time per query, throughput at batch 1 and 32, memory, and agreement with
the torch backend's vectors.

Each backend runs in a fresh process of its own (so its resident memory is its own), over the vendored sample
traffic (300 real queries, few-shot prompts among them, cut to the model's head and tail as served). Runs
alternate the backends (A B C D, A B C D, ...) so a machine that slows down slows all of them; each figure is
the median over the runs, with the lowest and highest. Decision quality is measured apart, by
``simulations/quality.py --backend``: agreement of vectors says nothing about routing by itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bandit_router.bench.memory import write_figures
from bandit_router.config import load_config
from bandit_router.traffic.format import read_traffic

BATCH = 32


def sample_texts() -> list[str]:
    from importlib.resources import files

    return [r.query for r in read_traffic(str(files("bandit_router.data") / "sample_traffic.jsonl"))]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def measure(backend: str, vectors_path: str) -> dict[str, Any]:
    """One backend in this process: loads it, embeds the sample one query at a time, then in batches of 32."""
    from bandit_router.embedding.backends import load_embedder

    texts = sample_texts()
    config = dataclasses.replace(load_config().embedding, backend=backend, device="cpu")
    before = _rss_mb()
    started = time.perf_counter()
    embedder = load_embedder(config)
    loaded_s = time.perf_counter() - started
    embedder.embed(texts[:BATCH])  # first calls allocate; they are not what a router pays per query
    latencies, vectors = [], []
    for text in texts:
        started = time.perf_counter()
        (one,) = embedder.embed([text])
        latencies.append(time.perf_counter() - started)
        vectors.append(one.vector)
    started = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        embedder.embed(texts[i : i + BATCH])
    batched_s = time.perf_counter() - started
    np.save(vectors_path, np.stack(vectors))
    return {
        "backend": backend,
        "load_s": loaded_s,
        "p50_ms": statistics.median(latencies) * 1e3,
        "per_second_batch_1": len(texts) / sum(latencies),
        f"per_second_batch_{BATCH}": len(texts) / batched_s,
        "rss_mb": _rss_mb(),
        "model_rss_mb": _rss_mb() - before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    }


def _in_fresh_process(backend: str, vectors_path: str) -> dict[str, Any]:
    code = (
        "import json; from bandit_router.bench.embedding import measure; "
        f"print(json.dumps(measure({backend!r}, {vectors_path!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"embedding backend {backend} failed to run:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


FIGURES = (
    ("p50_ms", "p50 per query (ms)", ".2f"),
    ("per_second_batch_1", "queries/s, batch 1", ".0f"),
    (f"per_second_batch_{BATCH}", f"queries/s, batch {BATCH}", ".0f"),
    ("model_rss_mb", "memory it adds (MB)", ".0f"),
    ("rss_mb", "process RSS (MB)", ".0f"),
    ("cosine_mean", "cosine to torch, mean", ".4f"),
    ("cosine_min", "cosine to torch, min", ".4f"),
)


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    rows = ["| backend | " + " | ".join(title for _, title, _ in FIGURES) + " |", "| --- |" + " ---: |" * len(FIGURES)]
    for backend, results in runs.items():
        cells = []
        for key, _, fmt in FIGURES:
            values = sorted(r[key] for r in results)
            middle = format(statistics.median(values), fmt)
            cells.append(
                middle
                if len(values) == 1 or key.startswith("cosine")
                else f"{middle} ({format(values[0], fmt)}-{format(values[-1], fmt)})"
            )
        rows.append(f"| {backend} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run_embedding_bench(backends: list[str], runs: int, json_path: str | None) -> dict[str, list[dict[str, Any]]]:
    order = ["torch", *[b for b in backends if b != "torch"]]  # torch's vectors are the reference
    results: dict[str, list[dict[str, Any]]] = {b: [] for b in order}
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):
            for backend in order:
                path = str(Path(folder) / f"{backend}.npy")
                result = _in_fresh_process(backend, path)
                reference, vectors = np.load(str(Path(folder) / "torch.npy")), np.load(path)
                cosines = (reference * vectors).sum(axis=1)
                result.update(cosine_mean=float(cosines.mean()), cosine_min=float(cosines.min()), run=run)
                results[backend].append(result)
                print(
                    f"run {run + 1}/{runs} {backend}: p50 {result['p50_ms']:.2f} ms, "
                    f"{result[f'per_second_batch_{BATCH}']:.0f}/s at batch {BATCH}",
                    file=sys.stderr,
                    flush=True,
                )
    print(table(results))
    write_figures({"runs": results}, json_path)
    return results
