"""What a backend builds locally from the model's own files (an ONNX export, a distilled token table): where it
lives, what names it, and building it once however many processes ask at the same time."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from bandit_router.config import EmbeddingConfig

log = logging.getLogger(__name__)


def build_dir(config: EmbeddingConfig) -> Path:
    if config.build_dir:
        return Path(config.build_dir)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bandit-router" / "embeddings"


def fingerprint(folder: Path, recipe: str) -> str:
    """A name for what ``recipe`` builds from the model in ``folder``: it changes with any byte of the model's
    files and with the recipe, so a build is never used for another model or an older recipe."""
    digest = hashlib.sha256(recipe.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def built(target: Path, build: Callable[[Path], None], what: str) -> Path:
    """``target``, built by ``build(partial_path)`` unless it exists. Under a lock, so processes starting together
    build it once; into a partial file renamed into place, so nobody ever reads half of one."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while this one waited
            return target
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        log.warning("building %s into %s (once per model and recipe)", what, target)
        started = time.monotonic()
        try:
            build(partial)
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        log.warning("built %s in %.1f s", what, time.monotonic() - started)
    return target
