"""How the HTTP servers (dashboard, API, gateway) listen: TLS as the server is configured, a cap on open connections
and a deadline for each request's head, so that idle or trickling clients cannot hold its sockets (and the
process's file descriptors, which gRPC needs too)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bandit_router.config import ServerConfig

log = logging.getLogger(__name__)


class _Limits:
    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.refused = 0
        self.timed_out = 0


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's protocol of one connection: refuses it beyond the cap, closes it when a request's head
    (up to the blank line) has not arrived in time."""

    def __init__(self, inner: asyncio.Protocol, limits: _Limits) -> None:
        self.inner = inner
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.counted = False
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.limits.open >= self.limits.max_connections:
            self.limits.refused += 1
            transport.abort()
            return
        self.limits.open += 1
        self.counted = True
        self._arm()
        self.inner.connection_made(transport)

    def _arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.limits.header_timeout_s, self._expire)

    def _expire(self) -> None:
        self.limits.timed_out += 1
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        if self.timer is None:  # the first bytes of the next request on a kept-alive connection
            self._arm()
        seen = self.tail + data
        if b"\r\n\r\n" in seen and self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.counted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            self.limits.open -= 1
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, with each connection under :class:`_Limits`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, max_connections: int, header_timeout_s: float,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(runner, host, port, **kwargs)
        self.limits = _Limits(max_connections, header_timeout_s)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (TCPSite.start would bind too)
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = server
        limits = self.limits
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(factory(), limits), self._host, self._port, ssl=self._ssl_context, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


async def start_site(
    runner: web.AppRunner, listen: str, max_connections: int, header_timeout_s: float, server: ServerConfig
) -> tuple[GuardedSite, str]:
    """Serves ``runner`` (set up) on ``listen`` under the limits, over TLS when the server has a certificate;
    returns the site and its URL (with the bound port, which differs from the configured one when that was 0)."""
    host, _, port = listen.rpartition(":")
    context = None
    if server.tls_cert_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    site = GuardedSite(runner, host, int(port), max_connections, header_timeout_s, ssl_context=context)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return site, f"{'https' if context else 'http'}://{host}:{bound}/"
