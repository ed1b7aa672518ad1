"""Policy snapshots at rest: files written atomically beside Redis's copy, and the newest of the two."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from bandit_router.config import Config
from bandit_router.policy.vw import Snapshot, SnapshotError
from bandit_router.store.redis_store import Store

log = logging.getLogger(__name__)


def private(path: str, flags: int) -> int:
    """Opens a file readable by its owner only: snapshots and logs hold request metadata."""
    return os.open(path, flags, 0o600)


class SnapshotFiles:
    """Snapshots on disk, newest kept, written atomically (temporary file, fsync, rename)."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep

    @classmethod
    def of(cls, config: Config) -> SnapshotFiles:
        """The snapshots of ``config``'s data folder."""
        return cls(config.server.data_path / "snapshots", config.policy.keep_snapshots)

    def write_served(self, data: bytes) -> Path:
        """The snapshot the quality gate last promoted, kept apart from the rotating checkpoints."""
        return self._write_atomic(self.directory / "served.snap", data)

    def served(self) -> Snapshot | None:
        path = self.directory / "served.snap"
        try:
            return Snapshot.decode(path.read_bytes())
        except FileNotFoundError:
            return None
        except (SnapshotError, ValueError, KeyError) as exc:
            log.warning("skipping served snapshot %s: %s", path, exc)
            return None

    def _write_atomic(self, path: Path, data: bytes) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb", opener=private) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def write(self, data: bytes, version: int) -> Path:
        path = self._write_atomic(self.directory / f"policy-{version:010d}.snap", data)
        for old in sorted(self.directory.glob("policy-*.snap"))[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def newest(self) -> Snapshot | None:
        """The newest snapshot that decodes; a corrupt or truncated file is skipped with a warning."""
        for path in sorted(self.directory.glob("policy-*.snap"), reverse=True):
            try:
                return Snapshot.decode(path.read_bytes())
            except (SnapshotError, ValueError, KeyError) as exc:
                log.warning("skipping snapshot %s: %s", path, exc)
        return None


async def load_snapshot(store: Store, files: SnapshotFiles, served: bool = False) -> Snapshot | None:
    """The newer of Redis's and the disk's snapshots (the learner's checkpoint, or with ``served`` the one
    the quality gate last promoted); a corrupt one is skipped."""
    candidates: list[Snapshot] = []
    raw = await (store.load_served() if served else store.load_snapshot())
    if raw is not None:
        try:
            candidates.append(Snapshot.decode(raw))
        except SnapshotError as exc:
            log.warning("snapshot in Redis is unusable (%s); trying the disk", exc)
    on_disk = await asyncio.to_thread(files.served if served else files.newest)
    if on_disk is not None:
        candidates.append(on_disk)
    return max(candidates, key=lambda s: s.version, default=None)
