"""What every request goes through before a handler sees it.

- `problems` (outermost): aiohttp's own HTTP errors (unknown route, wrong method, body too
  large) become application/problem+json; anything a handler did not expect is logged with
  its traceback and answered with a 500 problem+json that carries only an error id.
- `bounded_body`: a request body is read here, before any signature or token check that
  needs it, with a small size limit and a deadline (a webhook is a few KB and arrives at
  once). Compressed and multipart bodies are refused: no endpoint takes them, and a
  compressed body can expand far beyond its size on the wire. Handlers marked `@own_body`
  (the CAP ingest, up to 5 MiB) read theirs with `read_body`, after checking who is sending,
  with a longer deadline and only a few at a time.
- The `Server` header says "warnd", not the aiohttp and Python versions.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from warnd.api.problems import problem
from warnd.config import ServerCfg

log = structlog.get_logger("warnd.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_H = TypeVar("_H", bound=Callable[..., Any])
_OWN_BODY = "warnd_own_body"
SERVER_NAME = "warnd"


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int = 64 * 1024
    timeout: float = 10.0
    large_timeout: float = 120.0
    large_at_once: int = 4

    @classmethod
    def from_settings(cls, cfg: ServerCfg) -> BodyLimits:
        return cls(cfg.max_body_bytes, cfg.body_timeout_seconds, cfg.large_body_timeout_seconds,
                   cfg.large_bodies_at_once)


class BodyRefused(Exception):
    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail

    def response(self) -> web.Response:
        resp = problem(self.status, self.title, self.detail)
        resp.force_close()  # the rest of a refused body is not worth reading on this connection
        return resp


LIMITS = web.AppKey("body_limits", BodyLimits)
LARGE_SLOTS = web.AppKey("large_body_slots", asyncio.Semaphore)


def own_body(handler: _H) -> _H:
    """Mark a route handler that reads its (large) body itself with `read_body`."""
    setattr(handler, _OWN_BODY, True)
    return handler


def reads_own_body(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, _OWN_BODY, False))


def _check_headers(request: web.Request, limit: int) -> None:
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise BodyRefused(415, "Unsupported encoding", "compressed request bodies are not accepted; "
                                                       "send the body uncompressed")
    if request.content_type.startswith("multipart/"):
        raise BodyRefused(415, "Unsupported media type", "multipart bodies are not accepted here")
    if request.content_length is not None and request.content_length > limit:
        raise BodyRefused(413, "Too large", f"the body is limited to {limit} bytes, "
                                            f"this one declares {request.content_length}")


BODY_READ = web.RequestKey("warnd.body_read", bool)  # on a request copy whose body is already in memory


async def _read(request: web.Request, limit: int, seconds: float,
                slots: asyncio.Semaphore | None = None) -> web.Request:
    """A copy of the request whose body has been read (request.read/post/json then answer
    from memory), or BodyRefused. With `slots`, the wait for one counts against the deadline."""
    if request.get(BODY_READ):
        return request
    _check_headers(request, limit)
    copy = request.clone(client_max_size=limit)
    copy[BODY_READ] = True
    try:
        async with asyncio.timeout(seconds):
            if slots is None:
                await copy.read()
            else:
                async with slots:
                    await copy.read()
    except TimeoutError:
        raise BodyRefused(408, "Request timeout", f"the body did not arrive within {seconds:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise BodyRefused(413, "Too large", f"the body is limited to {limit} bytes") from None
    except RequestPayloadError as e:
        raise BodyRefused(400, "Bad request", f"the body could not be read: {e}") from None
    except ConnectionError:  # the client went away mid-body: nobody will read the answer
        raise BodyRefused(400, "Bad request", "the connection closed before the body arrived") from None
    return copy


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body of an `@own_body` route: at most `limit` bytes, within the large deadline,
    a few at a time (memory stays bounded whatever arrives). Raises BodyRefused."""
    limits = request.app[LIMITS]
    return await (await _read(request, limit, limits.large_timeout, request.app[LARGE_SLOTS])).read()


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BodyRefused as e:
        return e.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k in ("Allow", "WWW-Authenticate")}
        resp = problem(e.status, e.reason, _detail(e, request))
        resp.headers.update(headers)
        return resp
    except Exception:
        error_id = secrets.token_hex(6)
        log.exception("unhandled error", method=request.method, path=request.path, error_id=error_id)
        return problem(500, "Internal error", "the request could not be handled; the error is logged "
                                              "under this error_id", error_id=error_id)


def _detail(e: web.HTTPException, request: web.Request) -> str:
    if e.status == 404:
        return f"no such resource: {request.path}"
    if e.status == 405:
        return f"{request.method} is not allowed here; allowed: {e.headers.get('Allow', '')}"
    if e.status == 413:
        return "the body is too large"
    return e.text or e.reason


async def bounded(request: web.Request) -> web.Request:
    """The request with its (small) body read within the limits: for a middleware that must
    look at the body before the handler (the console's CSRF form field)."""
    limits = request.app[LIMITS]
    return await _read(request, limits.max_bytes, limits.timeout)


@web.middleware
async def bounded_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (not request.body_exists or request.get(BODY_READ) or request.match_info.http_exception is not None
            or reads_own_body(request)):
        return await handler(request)
    return await handler(await bounded(request))


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


def install(app: web.Application, limits: BodyLimits, auth: Any = None) -> None:
    """Problems outermost, then `auth` (header-only checks, before any body is read), then
    bounded bodies. Call before the application starts."""
    app[LIMITS] = limits
    app[LARGE_SLOTS] = asyncio.Semaphore(limits.large_at_once)
    chain = [problems, *([auth] if auth is not None else []), bounded_body]
    for i, mw in enumerate(chain):
        app.middlewares.insert(i, mw)
    app.on_response_prepare.append(_server_header)
