"""The README's Python client example runs against a live server."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bandit_router.config import load_config
from bandit_router.transport.grpc_server import Server

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_readme_client_example_runs(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    assert server.http is not None
    code = blocks[0].replace("http://127.0.0.1:8000", server.http.url.rstrip("/"))
    # The example is blocking client code; run it off the loop that serves it.
    await asyncio.to_thread(exec, compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split("\n")
    model, probability, version = printed[0].split()
    assert model in {m.id for m in server.service.list_models()}
    assert 0 < float(probability) <= 1 and version == "v0"
    reward, joules, source, *basis = printed[1].split(" ")
    assert float(reward) <= 0.9
    assert float(joules) > 0 and source == "estimated" and basis  # energy is never "computed"


def test_readme_gateway_catalog_is_a_valid_configuration(tmp_path: Path) -> None:
    (toml,) = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    path = tmp_path / "router.toml"
    path.write_text(toml)
    backed = {m.id: m for m in load_config(str(path), env={}).models if m.base_url}
    assert set(backed) == {"llama-3.1-8b-instruct", "llama-3.3-70b-instruct"}
    assert backed["llama-3.3-70b-instruct"].upstream.startswith("meta-llama/")
