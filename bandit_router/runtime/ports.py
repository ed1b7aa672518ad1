"""Ports checked before anything loads: a taken one stops the start at once, naming the setting, not after the
embedding model has loaded with a raw gRPC log line."""

from __future__ import annotations

import errno
import socket

from bandit_router.config import Config, ConfigError


def _taken(listen: str) -> str | None:
    """Why ``HOST:PORT`` cannot be bound now (the port is taken), or None; port 0 and odd hosts are left to the
    server that binds them (it says so in its own words)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or int(port) == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is taken (another process listens there)"
            return None
    return None


def check_ports(config: Config) -> None:
    """Raises ConfigError for the first configured listener whose port is taken."""
    listeners = [("server.listen", config.server.listen, not config.server.reuse_port)]
    listeners += [("http.listen", config.http.listen, True), ("dashboard.listen", config.dashboard.listen, True)]
    for key, listen, checked in listeners:
        why = _taken(listen) if listen and checked else None
        if why is not None:
            env = "BANDIT_ROUTER_" + key.replace(".", "_").upper()
            raise ConfigError(f"{key}: cannot listen on {listen}: {why}; set {key} (or {env}) to a free HOST:PORT")
