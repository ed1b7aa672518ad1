"""The README's Python client example runs against a live server."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest
from backends import UserBackend, catalog_of, gateway_before

from bandit_router.config import load_config
from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_readme_client_example_runs(server: RouterProcess, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    assert server.http is not None
    code = blocks[0].replace("http://127.0.0.1:8000", server.http.url.rstrip("/"))
    # The example is blocking client code; run it off the loop that serves it.
    names: dict[str, Any] = {}
    await asyncio.to_thread(exec, compile(code, "README.md", "exec"), names)
    printed = capsys.readouterr().out.split("\n")
    model, probability, version = printed[0].split()
    assert model in {m.id for m in server.service.list_models()}
    assert 0 < float(probability) <= 1 and version == "v0"
    reward, joules, source, *basis = printed[1].split(" ")
    assert float(joules) > 0 and source == "estimated" and basis  # energy is never "computed"
    # The reward is the example's quality (0.9) less energy at its weight (0.5) and cost at the server's.
    result, weights = names["result"], server.service.config.reward
    assert float(reward) == pytest.approx(result.reward)
    assert result.cost_usd > 0 and weights.cost_weight > 0
    assert result.reward == pytest.approx(
        0.9
        - 0.5 * result.energy_joules / weights.energy_scale_joules
        - weights.cost_weight * result.cost_usd / weights.cost_scale_usd
    )


def test_readme_gateway_catalog_is_a_valid_configuration(tmp_path: Path) -> None:
    (toml,) = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    path = tmp_path / "router.toml"
    path.write_text(toml)
    backed = {m.id: m for m in load_config(str(path), env={}).models if m.base_url}
    assert set(backed) == {"llama-3.1-8b-instruct", "llama-3.3-70b-instruct"}
    assert backed["llama-3.3-70b-instruct"].upstream.startswith("meta-llama/")


async def test_readme_client_libraries_example_runs(tmp_path: Path, redis_url: str, embedder: Embedder) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "import litellm" in b]
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    backend = await UserBackend("my-7b", reply="Paris.").start()
    try:
        async with gateway_before(tmp_path, redis_url, embedder, catalog_of(backend)) as served:
            live = code.replace("http://127.0.0.1:8000", served.url.rstrip("/"))
            names: dict[str, Any] = {}
            await asyncio.to_thread(exec, compile(live, "README.md", "exec"), names)
            names["feedback"].close()
            # Three answers from the backend, each rewarded once through the decision id its client showed.
            assert backend.calls == 3
            assert served.service.learner is not None
            await served.service.learner.wait_learned(3, timeout=60)
    finally:
        await backend.stop()
