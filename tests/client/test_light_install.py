"""``pip install bandit-router`` without the server extra: the client installs without torch, sentence-transformers,
VW, gRPC or Redis, and routes and rewards against a running router."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from pathlib import Path

from helpers import skip_or_fail

from bandit_router.runtime.process import RouterProcess

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
SCRIPT = """
import importlib.util, json, sys
import bandit_router
with bandit_router.Client(sys.argv[1]) as client:
    decision = client.route("How many legs does a spider have?")
    result = client.reward(decision.decision_id, 1.0)
heavy = ["torch", "sentence_transformers", "vowpal_wabbit_next", "grpc", "redis", "numpy", "aiohttp"]
print(json.dumps({
    "model": decision.model,
    "rewarded": result.decision_id == decision.decision_id,
    "installed": [m for m in heavy if importlib.util.find_spec(m) is not None],
    "version": bandit_router.__version__,
    "already_rewarded": bandit_router.AlreadyRewarded.__name__,
}))
"""


async def run(*command: str | Path) -> str:
    process = await asyncio.create_subprocess_exec(
        *map(str, command), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, f"{command[:4]} failed:\n{out.decode()[-3000:]}"
    return out.decode()


async def test_the_client_alone_installs_light_and_works(tmp_path: Path, server: RouterProcess) -> None:
    assert server.http is not None
    # What the install takes (the build backend, httpx and its dependencies), put there by scripts/test.sh:
    # the test needs no registry, and a missing wheel fails the install rather than fetching it.
    if not any(WHEELHOUSE.glob("httpx-*.whl")):
        skip_or_fail(f"no wheels for a client-only install in {WHEELHOUSE}: scripts/test.sh downloads them")
    venv = tmp_path / "client-venv"
    await run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    await run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--find-links",
        WHEELHOUSE,
        ROOT,
    )
    report = json.loads((await run(python, "-c", SCRIPT, server.http.url)).strip().splitlines()[-1])
    assert report["rewarded"] and report["model"] in server.service.config.model_by_id
    assert report["installed"] == []
    assert report["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert report["already_rewarded"] == "AlreadyRewarded"
    # The command says what to install, not a traceback.
    process = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "bandit-router"), "serve", stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 2 and 'pip install "bandit-router[server]"' in err.decode()
