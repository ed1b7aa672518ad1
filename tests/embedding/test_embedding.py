"""The embedder: offline model, head-and-tail truncation of long queries, and shared batches."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers import until

from bandit_router.config import EMBEDDING_BACKENDS, EmbeddingConfig, load_config
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.batcher import BatchingEmbedder
from bandit_router.embedding.folder import declared_dimension
from bandit_router.embedding.model import (
    Embedder,
    TorchEmbedder,
    bundled_model_path,
    resolve_dtype,
)
from bandit_router.embedding.pool import EmbedderPool, available_cpus
from bandit_router.embedding.shared import EmbedderConnection
from bandit_router.embedding.types import Embedded
from bandit_router.embedding.wire import shared_socket
from bandit_router.embedding.worker import EmbedderProcess

SHOTS = "".join(f"Q: What is {i} plus {i}? A: {2 * i}\n" for i in range(120))


def test_short_query_is_read_whole(torch_embedder: TorchEmbedder) -> None:
    embedder = torch_embedder
    tokens = embedder.tokens(["Write a poem about the sea."])
    whole = embedder._model.tokenizer("Write a poem about the sea.")["input_ids"]
    assert tokens.input_ids[0].tolist() == whole
    assert (tokens.counts, tokens.truncated) == ([len(whole) - 2], [False])


def test_long_few_shot_prompt_keeps_its_head_and_its_final_question(torch_embedder: TorchEmbedder) -> None:
    embedder = torch_embedder
    query = SHOTS + "Q: Write a sonnet about the autumn rain."
    tokenizer, cut = embedder._model.tokenizer, embedder.tokens
    pieces = tokenizer(query, add_special_tokens=False)["input_ids"]
    tokens = cut([query, "2 + 2?"])
    assert tokens.truncated == [True, False]
    assert tokens.counts[0] == len(pieces) > cut.budget
    row, tail = tokens.input_ids[0].tolist(), cut.budget - cut.head_tokens
    # [CLS], the head, the tail, [SEP]: the model's whole window and no more.
    assert len(row) == cut.budget + 2 == int(tokens.attention_mask[0].sum())
    assert row[1 : 1 + cut.head_tokens] == pieces[: cut.head_tokens]
    assert row[1 + cut.head_tokens : -1] == pieces[-tail:]
    assert tokenizer.decode(row[1 : 1 + cut.head_tokens]).startswith("q : what is 0 plus 0?")
    assert tokenizer.decode(row[1 + cut.head_tokens : -1]).endswith("q : write a sonnet about the autumn rain.")
    # The short query is padded to the batch's width, and its padding is masked out.
    assert 0 < int(tokens.attention_mask[1].sum()) < len(row)


def test_the_vectors_are_the_models_own(torch_embedder: TorchEmbedder) -> None:
    embedder = torch_embedder
    # The batch is tokenized and padded here, then run through the model's modules: the same vectors as
    # sentence-transformers' own encode, mixed lengths and padding included.
    texts = ["Write a poem about the sea.", "What is 17 plus 25?", "Explain photosynthesis to a child, briefly."]
    ours = np.stack([e.vector for e in embedder.embed(texts)])
    theirs = embedder._model.encode(texts, normalize_embeddings=True)
    assert np.allclose(ours, theirs, atol=1e-5)


def test_the_dimension_the_model_folder_declares_is_the_loaded_models(embedder: Embedder, tmp_path: Path) -> None:
    """A separate learner reads the dimension from the folder instead of loading torch and the weights: it must be
    the one the loaded model gives, and a folder that says too little gives None (the caller then loads it)."""
    config = load_config(None).embedding
    assert declared_dimension(config) == embedder.dimension
    modules = (Path(bundled_model_path()) / "modules.json").read_text(encoding="utf-8")
    (tmp_path / "modules.json").write_text(modules.replace("models.Pooling", "models.SomethingNew"), encoding="utf-8")
    assert declared_dimension(dataclasses.replace(config, model=str(tmp_path))) is None


def test_the_final_question_changes_the_embedding_of_a_long_prompt(torch_embedder: TorchEmbedder) -> None:
    # Cutting only at the head would make these two identical: the model would never see the question. (The static
    # backend sees it too, but as one piece in an average of 254: its vectors of the two differ by less.)
    embedder = torch_embedder
    math, poem = embedder.embed([SHOTS + "Q: What is 12 plus 30?", SHOTS + "Q: Write a sonnet about the autumn rain."])
    assert float(math.vector @ poem.vector) < 0.99
    assert abs(float(np.linalg.norm(math.vector)) - 1.0) < 1e-4


async def test_concurrent_requests_share_batches(torch_embedder: TorchEmbedder) -> None:
    # The torch backend's batching (the static backend embeds at once, inline: see the next test).
    embedder = torch_embedder
    batcher = BatchingEmbedder(embedder, EmbeddingConfig(device="cpu", max_batch_size=16, max_wait_ms=20))
    try:
        texts = [f"query number {i}" for i in range(32)]
        results = await asyncio.gather(*(batcher.embed(t) for t in texts))
        assert batcher.items == 32
        assert batcher.batches < 32
        alone = embedder.embed([texts[5]])[0]
        assert np.allclose(results[5].vector, alone.vector, atol=1e-4)
    finally:
        await batcher.close()


async def test_an_inline_embedder_answers_short_queries_at_once_and_long_ones_on_its_thread() -> None:
    static = load_embedder(dataclasses.replace(load_config().embedding, backend="static", device="cpu"))
    batcher = BatchingEmbedder(static, EmbeddingConfig(device="cpu", max_batch_size=16, max_wait_ms=20))
    try:
        short = [f"query number {i}" for i in range(8)]
        long = "word " * 1000  # past INLINE_CHARS: tokenizing it is worth a thread
        results = await asyncio.gather(*(batcher.embed(t) for t in [*short, long]))
        assert (batcher.items, batcher.batches) == (9, 9)
        for text, got in zip([*short, long], results, strict=True):
            assert np.allclose(got.vector, static.embed([text])[0].vector, atol=1e-6)
        assert batcher._task is not None  # only the long query started the batching task
    finally:
        await batcher.close()


class GatedEmbedder:
    """Stands in for the model (the real one is batched above): each batch waits until the test opens the
    gate, so requests pile up behind a busy embedder exactly as they do under load."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered: list[int] = []  # each batch's size as it reaches the gate
        self.sizes: list[int] = []  # ... and as it passes

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        self.entered.append(len(texts))
        if not self.gate.wait(60):
            raise TimeoutError("the test never opened the gate")
        self.sizes.append(len(texts))
        return [Embedded(np.zeros(4, np.float32), len(t.split()), False) for t in texts]


async def test_requests_queued_behind_a_busy_embedder_form_the_next_batch_whole() -> None:
    # With no time to wait for more, the batch is still whatever is already queued (up to the maximum).
    # An earlier batcher took at most the items that arrived within max_wait_ms: batches of 1 here.
    slow = GatedEmbedder()
    batcher = BatchingEmbedder(slow, EmbeddingConfig(device="cpu", max_batch_size=16, max_wait_ms=0))
    try:
        first = asyncio.ensure_future(batcher.embed("the first query"))
        await until(lambda: slow.entered == [1], 30, "the first batch to reach the (gated) embedder")
        backlog = [asyncio.ensure_future(batcher.embed(f"query {i}")) for i in range(20)]
        await until(lambda: batcher._queue.qsize() == 20, 30, "the backlog to queue behind the busy embedder")
        slow.gate.set()
        await asyncio.gather(first, *backlog)
        assert slow.sizes == [1, 16, 4]
    finally:
        slow.gate.set()
        await batcher.close()


async def test_a_pool_embeds_two_batches_at_once() -> None:
    slow = GatedEmbedder()
    batcher = BatchingEmbedder(slow, EmbeddingConfig(device="cpu", max_batch_size=8, max_wait_ms=50), lanes=2)
    try:
        calls = [asyncio.ensure_future(batcher.embed(f"query {i}")) for i in range(20)]
        # Two batches of 8 wait at the gate together; the rest queue for a free lane.
        await until(lambda: len(slow.entered) == 2, 30, "two batches at the gate")
        assert slow.entered == [8, 8] and len(batcher._inflight) == 2 and batcher._queue.qsize() == 4
        slow.gate.set()
        await asyncio.gather(*calls)
        assert slow.sizes[:2] == [8, 8] and sum(slow.sizes) == 20
    finally:
        slow.gate.set()
        await batcher.close()


async def test_lanes_share_the_backlog_and_a_lone_request_does_not_wait_for_company() -> None:
    slow = GatedEmbedder()
    batcher = BatchingEmbedder(slow, EmbeddingConfig(device="cpu", max_batch_size=16, max_wait_ms=5000), lanes=2)
    try:
        # With both lanes free, one request leaves at once (max_wait_ms would hold it 5 s).
        slow.gate.set()
        await asyncio.wait_for(batcher.embed("alone"), 2)
        slow.gate.clear()
        calls = [asyncio.ensure_future(batcher.embed(f"query {i}")) for i in range(12)]
        await until(lambda: len(slow.entered) == 3, 30, "both lanes' batches at the gate")
        slow.gate.set()
        await asyncio.gather(*calls)
        # Twelve queued for two free lanes: six each, not twelve on one lane while the other idles.
        assert slow.sizes == [1, 6, 6]
    finally:
        slow.gate.set()
        await batcher.close()


class ShortEmbedder(GatedEmbedder):
    """Answers one vector too few for each batch: a broken embedder, as seen from the batcher."""

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        return super().embed(texts)[1:]


async def test_a_batch_that_breaks_after_the_model_fails_its_callers_and_the_batcher_goes_on() -> None:
    # Nothing that goes wrong with a batch may leave its callers waiting forever (a Route that never returns).
    broken = ShortEmbedder()
    broken.gate.set()
    boom: list[int] = []

    def on_batch(start: float, end: float, items: int) -> None:
        boom.append(items)
        raise RuntimeError("energy accounting failed")

    config = EmbeddingConfig(device="cpu", max_batch_size=4, max_wait_ms=0)
    batcher = BatchingEmbedder(broken, config)
    accounting = BatchingEmbedder(GatedEmbedder(), config, on_batch=on_batch)
    accounting.embedder.gate.set()  # type: ignore[attr-defined]
    try:
        with pytest.raises(RuntimeError, match="the embedder answered 0 vectors for 1 queries"):
            await asyncio.wait_for(batcher.embed("one"), 30)
        # The vectors were there: only the accounting of the batch is lost.
        assert (await asyncio.wait_for(accounting.embed("two"), 30)).token_count == 1 and boom == [1]
        batcher._task.cancel()  # type: ignore[union-attr]
        await asyncio.sleep(0)
        # A batcher whose loop has gone is started again by the next request.
        batcher.embedder = GatedEmbedder()
        batcher.embedder.gate.set()
        assert (await asyncio.wait_for(batcher.embed("three"), 30)).token_count == 1
    finally:
        await batcher.close()
        await accounting.close()


def test_the_model_runs_in_the_configured_precision(torch_embedder: TorchEmbedder) -> None:
    embedder = torch_embedder
    half = TorchEmbedder(dataclasses.replace(load_config().embedding, backend="torch", device="cpu", dtype="bfloat16"))
    assert (embedder.dtype, half.dtype) == ("float32", "bfloat16")
    assert {str(p.dtype) for p in half._model.parameters()} == {"torch.bfloat16"}
    texts = ["Write a poem about the sea.", "What is 17 plus 25?"]
    for low, full in zip(half.embed(texts), embedder.embed(texts), strict=True):
        assert low.vector.dtype == np.float32
        assert float(low.vector @ full.vector) > 0.99


@pytest.mark.parametrize(("dtype", "device", "resolved"), [("auto", "cuda:0", "float16"), ("auto", "cpu", "float32")])
def test_auto_precision_is_half_on_cuda_only(dtype: str, device: str, resolved: str) -> None:
    assert resolve_dtype(dtype, device) == resolved


@pytest.fixture(scope="module")
def pool() -> Iterator[EmbedderPool]:
    config = dataclasses.replace(load_config().embedding, device="cpu", processes=2)
    pool = EmbedderPool(config)
    yield pool
    pool.close()


def test_worker_processes_embed_what_the_model_embeds_in_process(pool: EmbedderPool, embedder: Embedder) -> None:
    texts = ["Write a poem about the sea.", SHOTS + "Q: Write a sonnet about the autumn rain.", "2 + 2?"]
    assert (pool.lanes, pool.dimension, pool.device) == (2, embedder.dimension, "cpu")
    for ours, theirs in zip(pool.embed(texts), embedder.embed(texts), strict=True):
        assert (ours.token_count, ours.truncated) == (theirs.token_count, theirs.truncated)
        assert np.allclose(ours.vector, theirs.vector, atol=1e-5)


def test_a_killed_worker_is_started_again_and_the_pool_keeps_embedding(pool: EmbedderPool) -> None:
    victim = pool._idle.queue[-1]  # the worker the next call takes
    os.kill(victim._process.pid, signal.SIGKILL)
    victim._process.wait(timeout=60)  # dead before the next call, so that call must find it so
    before = pool.restarts
    assert len(pool.embed(["still embedding"])) == 1
    assert pool.restarts == before + 1 and victim._process.poll() is None


def test_a_shared_server_answers_each_router_process_with_its_own_vectors(embedder: Embedder, tmp_path: Path) -> None:
    config = dataclasses.replace(load_config().embedding, device="cpu", processes=1, max_batch_size=64)
    server = EmbedderProcess(config, threads=1, serve_at=shared_socket(str(tmp_path), 0))
    pools = [EmbedderPool(dataclasses.replace(config, shared_dir=str(tmp_path))) for _ in range(3)]
    try:
        assert (pools[0].lanes, pools[0].dimension, pools[0].device) == (1, embedder.dimension, "cpu")
        asked = {
            i: [f"router {i} asks question {j} about {'sea' if j % 2 else 'tax law'}" for j in range(i + 1)]
            for i in range(3)
        }
        answers: dict[int, list[Embedded]] = {}
        # Sent at once, the three requests wait together and go through the model as merged batches.
        threads = [
            threading.Thread(target=lambda i=i: answers.__setitem__(i, pools[i].embed(asked[i]))) for i in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for i, texts in asked.items():
            expected = embedder.embed(texts)
            assert len(answers[i]) == len(texts)
            for ours, theirs in zip(answers[i], expected, strict=True):
                assert np.allclose(ours.vector, theirs.vector, atol=1e-5)
                assert ours.token_count == theirs.token_count
    finally:
        for pool in pools:
            pool.close()
        server.close()
    assert server.exited
    assert not os.path.exists(shared_socket(str(tmp_path), 0))


def test_a_shared_servers_clients_fail_clearly_when_it_is_gone_and_reconnect_when_it_is_back(tmp_path: Path) -> None:
    config = dataclasses.replace(load_config().embedding, device="cpu", processes=1)
    path = shared_socket(str(tmp_path), 0)
    server = EmbedderProcess(config, threads=1, serve_at=path)
    client = EmbedderConnection(path)
    assert len(client.embed(["first"])) == 1
    server.kill()
    with pytest.raises(RuntimeError, match=r"embedding server at .*embed-0\.sock closed the connection mid-batch"):
        client.embed(["second"])
    os.unlink(path)  # what a killed server leaves behind
    server = EmbedderProcess(config, threads=1, serve_at=path)
    try:
        assert len(client.embed(["third"])) == 1
        assert client.restarts == 1
    finally:
        client.close()
        server.close()


def test_a_worker_that_cannot_load_its_model_fails_the_start_with_the_reason(tmp_path: Path) -> None:
    config = EmbeddingConfig(model=str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(RuntimeError, match=r"embedding worker failed to start: .*no-such-model"):
        EmbedderProcess(config)


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("garbled", None)],
)
def test_embedding_threads_respect_a_containers_cpu_quota(tmp_path: Path, cpu_max: str, limit: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    mine = len(os.sched_getaffinity(0))
    assert available_cpus(str(path)) == (mine if limit is None else min(mine, limit))
    assert available_cpus(str(tmp_path / "absent")) == mine


@pytest.mark.parametrize("backend", EMBEDDING_BACKENDS)
def test_loading_and_embedding_a_long_query_write_no_progress_bars_or_length_warnings(
    tmp_path: Path, backend: str
) -> None:
    """A service log has no tqdm bars, nor transformers' "indexing errors" warning for a query longer than the
    model reads (the router clips long queries itself), at any log level, whatever runs the model."""
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG)\n"
        "from bandit_router.config import EmbeddingConfig\n"
        "from bandit_router.embedding.backends import load_embedder\n"
        f"e = load_embedder(EmbeddingConfig(device='cpu', backend={backend!r}))\n"
        "print(len(e.embed(['word ' * 3000])))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr
    for noise in ("it/s]", "Loading weights", "Token indices sequence length", "indexing errors"):
        assert noise not in result.stderr, result.stderr
