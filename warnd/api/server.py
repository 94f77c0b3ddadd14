"""Serving the HTTP application with limits per client (`warnd serve`).

aiohttp reads headers and bodies for as long as a client cares to send them and accepts
connections until the process runs out of file descriptors, so one client dripping bytes
over a thousand connections could take the server down. Here:

- Header timeout: aiohttp's keep-alive timer runs after each response and closes the
  connection if no complete request has arrived when it fires; set to
  `header_timeout_seconds`, it bounds the time to send the next request's line and headers
  (and how long an idle connection is kept). Recent aiohttp (3.14) also arms it when a
  connection opens; older versions did not, so the guard arms its own deadline for the first
  request and cancels it when that request has arrived.
- Body timeout and size: `warnd.api.middleware` (a deadline and a limit per route).
- Connections: at most `max_connections_per_client` from one peer address and at most
  `max_connections` in all. A client at its own limit makes room among its own connections;
  at the overall limit a client holding fewer than the heaviest one gets in at the heaviest
  one's expense, and one holding as many is closed on arrival (before aiohttp is involved,
  so refusing costs little). Only connections not being answered are pushed out (still
  sending their request, or idle between requests), oldest first, so slow connections
  cannot keep a normal client, whose request arrives at once, from being served.
- Header size: at most `MAX_HEADERS` fields of `MAX_FIELD` bytes, so each connection costs a
  bounded amount of memory; a refused body is not read to its end (`LINGER_SECONDS`).
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from warnd.api.middleware import SERVER_NAME, reads_own_body
from warnd.api.problems import problem
from warnd.config import ServerCfg

log = structlog.get_logger("warnd.http")

MAX_LINE = 8190  # request line (the WeCom callback URL carries a signature and a nonce)
MAX_FIELD = 4096  # a header field; providers send short ones
MAX_HEADERS = 48
# A refused body is not read to its end: the answer is sent and the connection closed (clients
# read it; a few see a reset instead), so a flood of 5 MB posts costs little more than headers.
LINGER_SECONDS = 0.0
SHUTDOWN_SECONDS = 10.0  # on SIGTERM, requests in progress get this long to finish
FD_RESERVE = 200  # descriptors kept for the database pool, the broker, provider clients and logs
BACKLOG = 1024  # pending connections; asyncio accepts up to this many at once, so budget descriptors for it

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Handler(RequestHandler):
    """aiohttp's protocol for one connection. Its answer to malformed HTTP (a request line or
    header it cannot parse, before any application code runs) is problem+json without the
    aiohttp version, logged as one line rather than a traceback per bad request."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: an answer is already on its way
            raise ConnectionError("the response is already being sent")
        if status >= 500:
            log.error("unhandled error in the http protocol", status=status, exc_info=exc)
            detail = "the request could not be handled"
        else:
            detail = (message or HTTPStatus(status).phrase)[:300]
            log.info("malformed http request", status=status, detail=detail, peer=request.remote)
        resp = problem(status, HTTPStatus(status).phrase, detail)
        resp.headers["Server"] = SERVER_NAME
        resp.force_close()
        return resp


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol for it is made only once the guard admits it, so
    a refused connection costs an accept and a close."""

    __slots__ = ("busy", "client", "deadline", "guard", "inner", "make", "transport")

    def __init__(self, guard: ConnectionGuard, make: Callable[[], RequestHandler]):
        self.guard, self.make, self.busy, self.client = guard, make, 0, ""
        self.inner: RequestHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None  # for the first request's headers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        if not self.guard.admit(self):
            transport.abort()
            return
        self.inner = self.make()
        self.guard.by_handler[self.inner] = self
        self.deadline = asyncio.get_running_loop().call_later(self.guard.header_timeout, transport.abort)
        self.inner.connection_made(transport)

    def arrived(self) -> None:
        """A request's line and headers are in: the first-request deadline is over."""
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.arrived()
        self.guard.closed(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> None:
        if self.inner is not None:
            self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


@dataclass
class ConnectionGuard:
    """Open connections, per client (peer address) and in all, each oldest first."""

    max_connections: int
    per_client: int
    header_timeout: float = 10.0
    evicted: int = 0  # pushed out to make room
    refused: int = 0  # closed on arrival: nothing could be pushed out
    peak: int = 0
    clients: dict[str, dict[_Guarded, None]] = field(default_factory=dict)
    by_handler: dict[RequestHandler, _Guarded] = field(default_factory=dict)
    total: int = 0

    def admit(self, conn: _Guarded) -> bool:
        own = self.clients.get(conn.client, {})
        victims: dict[_Guarded, None] = {}
        if len(own) >= self.per_client:
            victims = own  # at its own limit a client makes room among its own connections
        elif self.total >= self.max_connections:
            heaviest = max(self.clients.values(), key=len)
            if len(heaviest) <= len(own) + 1:  # this client already holds as many as anyone
                self.refused += 1
                return False
            victims = heaviest  # a lighter client gets in at the heaviest one's expense
        if victims:
            victim = next((c for c in victims if not c.busy), None)
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            self.closed(victim)
            assert victim.transport is not None
            victim.transport.abort()
        self.clients.setdefault(conn.client, {})[conn] = None
        self.total += 1
        self.peak = max(self.peak, self.total)
        return True

    def closed(self, conn: _Guarded) -> None:
        own = self.clients.get(conn.client)
        if own is not None and conn in own:
            del own[conn]
            self.total -= 1
            if not own:
                del self.clients[conn.client]
        if conn.inner is not None:
            self.by_handler.pop(conn.inner, None)

    def factory(self, make: Callable[[], RequestHandler]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, make)

    @web.middleware
    async def arrival(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: a request's headers have arrived on this connection."""
        conn = self.by_handler.get(request.protocol)
        if conn is not None:
            conn.arrived()
        return await handler(request)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Innermost: the request and its body have arrived, so its connection is being
        answered and must not be pushed out. The large CAP routes read their body inside the
        handler (after checking the sender) and stay evictable: a flood of them must not be
        able to pin every connection."""
        conn = self.by_handler.get(request.protocol)
        if conn is None or reads_own_body(request):
            return await handler(request)
        conn.busy += 1
        try:
            return await handler(request)
        finally:
            conn.busy -= 1


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a ConnectionGuard."""

    def __init__(self, runner: web.BaseRunner, guard: ConnectionGuard, host: str, port: int,
                 handler_args: dict[str, Any], backlog: int = BACKLOG):
        super().__init__(runner, backlog=backlog)
        self._guard, self._host, self._port, self._handler_args = guard, host, port, handler_args

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:  # type: ignore[attr-defined]
            return int(self._server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def handler() -> RequestHandler:  # what server() would make, with our handle_error
            return _Handler(server, loop=loop, **self._handler_args)

        self._server = await loop.create_server(
            self._guard.factory(handler), self._host, self._port, backlog=self._backlog, reuse_address=True)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (up to the hard limit);
    returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


@dataclass
class Served:
    runner: web.AppRunner
    site: GuardedSite
    guard: ConnectionGuard

    async def close(self) -> None:
        g = self.guard
        log.info("http connections", peak=g.peak, evicted=g.evicted, refused=g.refused)
        await self.runner.cleanup()


async def serve(app: web.Application, cfg: ServerCfg, host: str, port: int) -> Served:
    """Start serving `app` on host:port with the limits of `cfg`."""
    fds = raise_fd_limit(cfg.max_connections + BACKLOG + FD_RESERVE)
    max_connections = cfg.max_connections
    if fds != resource.RLIM_INFINITY and max_connections + BACKLOG + FD_RESERVE > fds:
        max_connections = max(fds - BACKLOG - FD_RESERVE, 16)
        log.warning("connection limit lowered to fit the file descriptor limit", max_connections=max_connections,
                    configured=cfg.max_connections, nofile=fds)
    guard = ConnectionGuard(max_connections, min(cfg.max_connections_per_client, max_connections),
                            cfg.header_timeout_seconds)
    app.middlewares.insert(0, guard.arrival)
    app.middlewares.append(guard.middleware)
    handler_args: dict[str, Any] = dict(
        access_log=None, keepalive_timeout=cfg.header_timeout_seconds, lingering_time=LINGER_SECONDS,
        max_line_size=MAX_LINE, max_field_size=MAX_FIELD, max_headers=MAX_HEADERS)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS, **handler_args)
    await runner.setup()
    site = GuardedSite(runner, guard, host, port, handler_args)
    await site.start()
    log.info("http limits", max_connections=max_connections, per_client=guard.per_client,
             header_timeout=cfg.header_timeout_seconds,
             body_timeout=cfg.body_timeout_seconds, max_body_bytes=cfg.max_body_bytes, nofile=fds)
    return Served(runner, site, guard)
