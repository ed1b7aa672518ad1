"""The committed protobuf code is what protos/ generates today."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]


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
