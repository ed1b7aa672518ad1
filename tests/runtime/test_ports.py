"""A taken port stops the start before anything loads, naming the setting and its environment variable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers import make_config

from bandit_router.config import ConfigError
from bandit_router.runtime.ports import check_ports


@pytest.mark.parametrize("key", ["server.listen", "http.listen", "dashboard.listen"])
def test_a_taken_port_is_refused_naming_the_setting(tmp_path: Path, key: str) -> None:
    section, field = key.split(".")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        config = make_config(tmp_path, **{section: {field: listen}})
        env = "BANDIT_ROUTER_" + key.replace(".", "_").upper()
        with pytest.raises(ConfigError, match=rf"^{key}: cannot listen on {listen}: the port is taken .*\(or {env}\)"):
            check_ports(config)
    check_ports(config)  # the port is free again


def test_free_ports_port_zero_and_a_shared_grpc_port_pass(tmp_path: Path) -> None:
    check_ports(make_config(tmp_path))  # every listener on port 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        # A worker of `serve --workers N` shares the gRPC port on purpose.
        check_ports(make_config(tmp_path, server={"listen": listen, "reuse_port": True}))
