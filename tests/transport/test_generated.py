"""The committed protobuf code is what protos/ generates today."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]


def pinned(package: str) -> str:
    """The version scripts/constraints.txt pins ``package`` to."""
    for line in (ROOT / "scripts" / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in scripts/constraints.txt")


def test_the_generator_is_the_pinned_one() -> None:
    # A stale-looking diff from another generator release would send a reader to the wrong fix.
    for package in ("grpcio-tools", "protobuf"):
        assert version(package) == pinned(package), f"{package} {version(package)} is installed: run scripts/setup.sh"


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    status = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "protos/bandit_router/v1/router.proto"),
        ]
    )
    assert status == 0
    for name in ("router_pb2.py", "router_pb2.pyi", "router_pb2_grpc.py"):
        fresh = (tmp_path / "bandit_router/v1" / name).read_text()
        committed = (ROOT / "bandit_router/v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: regenerate with grpc_tools.protoc (see README)"
