"""How fast one shared embedding server answers: the model alone, then 1 and 8 clients at two batch sizes.

Run: ``.venv/bin/python scripts/embedding_server_bench.py [cpu|cuda]``. Each line is printed as it is measured.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import threading
import time

from bandit_router.bench.load import queries
from bandit_router.config import load_config
from bandit_router.embedding.model import Embedder
from bandit_router.embedding.shared import EmbedderConnection
from bandit_router.embedding.wire import shared_socket
from bandit_router.embedding.worker import EmbedderProcess


def hammer(path: str, clients: int, rows: int, seconds: float) -> None:
    conns = [EmbedderConnection(path) for _ in range(clients)]
    batch = queries(rows, seed=3)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def run(conn: EmbedderConnection) -> None:
        while time.perf_counter() < stop:
            began = time.perf_counter()
            conn.embed(batch)
            latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    p50, p99 = 1000 * latencies[len(latencies) // 2], 1000 * latencies[int(0.99 * len(latencies))]
    print(
        f"shared server, {clients} clients x batches of {rows}: {len(latencies) * rows / seconds:.0f} queries/s, "
        f"call p50 {p50:.2f} ms, p99 {p99:.2f} ms",
        flush=True,
    )
    for conn in conns:
        conn.close()


def main(device: str) -> None:
    config = dataclasses.replace(load_config().embedding, device=device, max_batch_size=128)
    folder = tempfile.mkdtemp(prefix="br-embed-")
    server = EmbedderProcess(config, serve_at=shared_socket(folder, 0))
    embedder = Embedder(config)
    texts = queries(32)
    tokens = embedder.tokens(texts)
    for name, work in (
        ("forward", lambda: embedder.forward(tokens.input_ids, tokens.attention_mask)),
        ("tokenize", lambda: embedder.tokens(texts)),
        ("embed", lambda: embedder.embed(texts)),
    ):
        work()
        began = time.perf_counter()
        for _ in range(20):
            work()
        print(f"in-process {name} of 32 queries: {(time.perf_counter() - began) / 20 * 1000:.2f} ms", flush=True)
    for clients, rows in ((1, 32), (1, 1), (8, 32), (8, 4)):
        hammer(shared_socket(folder, 0), clients, rows, 6.0)
    server.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "auto")
