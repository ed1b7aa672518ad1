"""Policy snapshots at rest: files written atomically beside Redis's copy, and the newest of the two."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Collection
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


async def load_snapshot(
    store: Store, files: SnapshotFiles, served: bool = False, tenants: Collection[str] | None = None
) -> Snapshot | None:
    """The newer of Redis's and the disk's snapshots (the learner's checkpoint, or with ``served`` the one
    the quality gate last promoted, with the parts of ``tenants`` only where given); a corrupt one is skipped."""
    candidates: list[Snapshot] = []
    try:
        if served:
            snapshot = await load_served(store, tenants)
        else:
            raw = await store.load_snapshot()
            snapshot = None if raw is None else Snapshot.decode(raw)
        if snapshot is not None:
            candidates.append(snapshot)
    except SnapshotError as exc:
        log.warning("snapshot in Redis is unusable (%s); trying the disk", exc)
    on_disk = await asyncio.to_thread(files.served if served else files.newest)
    if on_disk is not None:
        candidates.append(on_disk)
    newest = max(candidates, key=lambda s: s.version, default=None)
    return newest.only(tenants) if newest is not None and tenants is not None else newest


async def load_served(store: Store, tenants: Collection[str] | None = None) -> Snapshot | None:
    """The served snapshot in Redis with the parts of ``tenants`` (None: every tenant's); raises SnapshotError
    for one that does not decode."""
    raw, parts = await store.load_served(tenants)
    if raw is None:
        return None
    try:
        decoded = {tenant: json.loads(part) for tenant, part in parts.items()}
    except ValueError as exc:
        raise SnapshotError(f"a tenant's part of the served snapshot is not JSON: {exc}") from exc
    return Snapshot.decode(raw).with_tenants(decoded)


def served_parts(snapshot: Snapshot) -> tuple[bytes, dict[str, bytes]]:
    """The served snapshot as Redis keeps it: the body without tenants' parts, and each tenant's parts apart."""
    parts = {tenant: json.dumps(part).encode() for tenant, part in snapshot.tenant_parts().items()}
    return snapshot.shared().encode(), parts
