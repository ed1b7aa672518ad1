"""How the HTTP servers (dashboard, API, gateway) listen: TLS as the server is configured, and limits on their
connections, so that idle, trickling or hoarding clients cannot hold the sockets (and the process's file
descriptors, which gRPC needs too) that other clients' requests need.

Each connection is in one of three states. ``head``: a request's head (up to the blank line) is awaited, for at
most ``header_timeout_s``. ``busy``: a request is being answered (its body read, its answer streamed): no timer
of the guard's applies, the request's own deadlines do. ``idle``: kept alive between requests, for at most
``idle_timeout_s``. aiohttp tells the guard when a request starts and ends (:func:`track_requests`, the
outermost middleware of every app served here), so body bytes arriving after the head never re-arm a timer.
At the connection cap the longest-idle connection is closed to make room, and one client address may hold at
most ``max_per_address`` connections that have not yet been answered below 400 (probes aside).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bandit_router.config import DashboardConfig, HttpConfig, ServerConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A request to this path never makes its connection trusted: probes need no token.
PROBE_PATH = "/healthz"


@dataclasses.dataclass(frozen=True)
class EdgeLimits:
    """One server's connection limits (``http.*`` or ``dashboard.*``)."""

    max_connections: int
    header_timeout_s: float
    idle_timeout_s: float
    max_per_address: int

    @classmethod
    def of(cls, config: HttpConfig | DashboardConfig) -> EdgeLimits:
        return cls(
            config.max_connections, config.header_timeout_s, config.idle_timeout_s, config.max_connections_per_address
        )


class _Connections:
    """The open connections of one site, and what the guard did to them."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.open: set[_Guarded] = set()
        # Open connections per client address that no request has yet been answered on below 400.
        self.untrusted: collections.Counter[str] = collections.Counter()
        self.refused = 0
        self.timed_out = 0
        self.evicted = 0

    def release_untrusted(self, address: str) -> None:
        """One of ``address``'s untrusted connections was answered below 400, or closed."""
        self.untrusted[address] -= 1
        if self.untrusted[address] <= 0:
            del self.untrusted[address]  # no entry kept for every address ever seen

    def longest_idle(self) -> _Guarded | None:
        idle = [c for c in self.open if c.state == "idle"]
        return min(idle, key=lambda c: c.since) if idle else None


# The guard of each open connection, by its transport (the object aiohttp hands each request as request.transport).
_guards: dict[int, _Guarded] = {}


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's protocol of one connection under its site's :class:`_Connections`."""

    def __init__(self, inner: asyncio.Protocol, connections: _Connections) -> None:
        self.inner = inner
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.counted = False
        self.timer: asyncio.TimerHandle | None = None
        self.state = "head"
        self.since = 0.0
        self.address = ""
        self.trusted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        connections, limits = self.connections, self.connections.limits
        if connections.untrusted[self.address] >= limits.max_per_address:
            connections.refused += 1
            transport.abort()
            return
        if len(connections.open) >= limits.max_connections:
            # Make room by closing the connection idle longest; with none idle, every slot is answering.
            oldest = connections.longest_idle()
            if oldest is None:
                connections.refused += 1
                transport.abort()
                return
            connections.evicted += 1
            oldest.close()
        connections.open.add(self)
        connections.untrusted[self.address] += 1
        _guards[id(transport)] = self
        self.counted = True
        self._enter("head", limits.header_timeout_s)
        self.inner.connection_made(transport)

    def _enter(self, state: str, timeout: float | None) -> None:
        self.state = state
        loop = asyncio.get_running_loop()
        self.since = loop.time()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None if timeout is None else loop.call_later(timeout, self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > 0:
            # The last answer is still on its way to a slow reader: idle only once it has left.
            self.timer = asyncio.get_running_loop().call_later(timeout, self._expire, timeout)
            return
        self.connections.timed_out += 1
        transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def started(self) -> None:
        """aiohttp has the head of a request on this connection and is answering it."""
        self._enter("busy", None)

    def finished(self, trusted: bool) -> None:
        """The request's handler returned; the connection waits for the next one."""
        if trusted and not self.trusted:
            self.trusted = True
            self.connections.release_untrusted(self.address)
        if self.state == "busy":
            self._enter("idle", self.connections.limits.idle_timeout_s)

    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        if self.state == "idle":  # the first bytes of the next request on a kept-alive connection
            self._enter("head", self.connections.limits.header_timeout_s)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.counted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.counted:
            self.counted = False
            self.connections.open.discard(self)
            if not self.trusted:
                self.connections.release_untrusted(self.address)
            if self.transport is not None:
                _guards.pop(id(self.transport), None)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the connection's guard when a request starts and ends; outermost in every app served here."""
    guard = _guards.get(id(request.transport)) if request.transport is not None else None
    if guard is not None:
        guard.started()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if guard is not None:
            guard.finished(trusted=status < 400 and request.path != PROBE_PATH)


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, with each connection under its limits."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.connections = _Connections(limits)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (TCPSite.start would bind too)
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = server
        connections = self.connections
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(factory(), connections),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


async def start_site(
    runner: web.AppRunner, listen: str, limits: EdgeLimits, server: ServerConfig
) -> tuple[GuardedSite, str]:
    """Serves ``runner`` (set up, its app's outermost middleware :func:`track_requests`) on ``listen`` under
    ``limits``, over TLS when the server has a certificate; returns the site and its URL (with the bound port,
    which differs from the configured one when that was 0)."""
    host, _, port = listen.rpartition(":")
    context = None
    if server.tls_cert_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    site = GuardedSite(runner, host, int(port), limits, ssl_context=context)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return site, f"{'https' if context else 'http'}://{host}:{bound}/"
