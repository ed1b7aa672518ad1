"""Every embedding backend through one contract, each against the torch reference, and what they build once."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bandit_router.config import EMBEDDING_BACKENDS, load_config
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.build import built, fingerprint
from bandit_router.embedding.folder import MeanPooledModel
from bandit_router.embedding.model import Embedder, TorchEmbedder, bundled_model_path
from bandit_router.runtime.root import build_embedder

SHOTS = "".join(f"Q: What is {i} plus {i}? A: {2 * i}\n" for i in range(120))
TEXTS = [
    "Write a poem about the sea.",
    "What is 17 plus 25?",
    "Explain photosynthesis to a child, briefly.",
    SHOTS + "Q: Write a sonnet about the autumn rain.",
    "",
    "   ",
    "ünïcödé 漢字 🙂 ﷺ",
]


@pytest.fixture(scope="module", params=EMBEDDING_BACKENDS)
def backend(request: pytest.FixtureRequest, torch_embedder: TorchEmbedder) -> Iterator[Embedder]:
    if request.param == "torch":
        yield torch_embedder
        return
    # The default build folder, as a router uses it: built once per machine, then loaded.
    yield load_embedder(dataclasses.replace(load_config().embedding, backend=request.param, device="cpu"))


def test_every_backend_gives_unit_vectors_of_the_models_dimension(backend: Embedder) -> None:
    out = backend.embed(TEXTS)
    assert len(out) == len(TEXTS)
    for e in out:
        assert e.vector.dtype == np.float32 and e.vector.shape == (backend.dimension,) == (384,)
        assert np.isfinite(e.vector).all()
        assert abs(float(np.linalg.norm(e.vector)) - 1.0) < 1e-4


def test_every_backend_reads_the_same_word_pieces_as_the_reference(
    backend: Embedder, torch_embedder: TorchEmbedder
) -> None:
    # Token counts and the head-and-tail cut feed the router's complexity features: a backend must not move them.
    ours, reference = backend.tokens(TEXTS), torch_embedder.tokens(TEXTS)
    assert ours.counts == reference.counts and ours.truncated == reference.truncated
    assert (ours.input_ids == reference.input_ids).all()


def test_a_query_gets_the_same_vector_alone_or_in_a_batch(backend: Embedder) -> None:
    """Up to rounding, except int8: its dynamic quantisation scales activations by the whole batch's range, so a
    query's vector moves with its companions (0.965 lowest here, for the empty query)."""
    batch = backend.embed(TEXTS)
    least = 0.95 if "#onnx-int8:" in backend.model_name else 0.9999
    for text, together in zip(TEXTS, batch, strict=True):
        (alone,) = backend.embed([text])
        assert float(alone.vector @ together.vector) > least


def test_each_backend_agrees_with_the_reference_as_documented(backend: Embedder, torch_embedder: TorchEmbedder) -> None:
    """float32 exports are the same network (cosine 1 up to rounding); int8 weights keep the direction roughly
    (0.96 mean, 0.90 lowest on the sample traffic); the static table is another space, so it is held to the
    relations between queries rather than to the reference's vectors: a paraphrase is nearer than a stranger."""
    reference = np.stack([e.vector for e in torch_embedder.embed(TEXTS[:4])])
    ours = np.stack([e.vector for e in backend.embed(TEXTS[:4])])
    cosines = (reference * ours).sum(axis=1)
    name = backend.model_name
    if "#onnx-int8:" in name:
        assert cosines.mean() > 0.9
    elif "#onnx:" in name or isinstance(backend, TorchEmbedder):
        assert cosines.min() > 0.9999
    near, far, query = backend.embed(["How much is 17 plus 25?", "Write a poem about the sea.", "What is 17 plus 25?"])
    assert float(query.vector @ near.vector) > float(query.vector @ far.vector) + 0.1


def test_a_static_router_embeds_in_its_own_process() -> None:
    """The static backend costs tens of microseconds a query: the trip to a worker process would cost more."""
    config = dataclasses.replace(load_config().embedding, backend="static", device="cpu", processes=2)
    embedder = build_embedder(config)
    try:
        assert isinstance(embedder, Embedder)
    finally:
        embedder.close()


def test_what_is_built_is_built_once_however_many_ask_together(tmp_path: Path) -> None:
    """Four threads ask for one artefact at once; the build holds until all four have asked, so without the lock
    every one of them would build it."""
    target, asked, calls = tmp_path / "thing.bin", threading.Semaphore(0), []
    all_asked = threading.Event()

    def build(partial: Path) -> None:
        calls.append(partial)
        assert all_asked.wait(60)
        partial.write_bytes(b"x" * 1000)

    def ask() -> None:
        asked.release()
        built(target, build, "a test artefact")

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in threads:
        assert asked.acquire(timeout=60)
    all_asked.set()
    for t in threads:
        t.join(60)
    assert len(calls) == 1
    assert target.read_bytes() == b"x" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.bin", "thing.bin.lock"]


def test_a_failed_build_leaves_nothing_half_written(tmp_path: Path) -> None:
    def build(partial: Path) -> None:
        partial.write_bytes(b"half")
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        built(tmp_path / "thing.bin", build, "a test artefact")
    assert [p.name for p in tmp_path.iterdir()] == ["thing.bin.lock"]


def test_a_build_is_named_by_every_byte_of_the_model_and_by_the_recipe(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    first = fingerprint(folder, "recipe 1")
    assert fingerprint(folder, "recipe 1") == first
    assert fingerprint(folder, "recipe 2") != first
    (folder / "vocab.txt").write_text((folder / "vocab.txt").read_text(encoding="utf-8") + "extra\n", encoding="utf-8")
    assert fingerprint(folder, "recipe 1") != first


@pytest.mark.parametrize("backend", ["onnx", "static"])
def test_a_model_these_backends_cannot_rebuild_is_refused_by_name(backend: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    pooling = folder / "1_Pooling" / "config.json"
    modes = json.loads(pooling.read_text(encoding="utf-8"))
    pooling.write_text(json.dumps({**modes, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    config = dataclasses.replace(load_config().embedding, backend=backend, model=str(folder))
    with pytest.raises(ValueError, match=rf"embedding.backend {backend} supports a transformer with mean pooling only"):
        MeanPooledModel.read(config)


def test_embedding_build_prepares_a_backend_ahead_of_the_first_start(tmp_path: Path) -> None:
    """What a container image runs at build time: afterwards the artefact is there, named for model and recipe."""
    env = {**os.environ, "BANDIT_ROUTER_EMBEDDING_BUILD_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "bandit_router", "embedding-build", "--backends", "onnx"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "embedding backend onnx: ready" in done.stdout
    assert [p.suffix for p in tmp_path.glob("onnx-*.onnx")] == [".onnx"]
