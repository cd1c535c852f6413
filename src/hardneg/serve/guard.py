"""What every request passes before it reaches an endpoint, as one ASGI middleware: a request id, the bearer
token, the body-size limit, metrics, a log line for every refused request, and a generic 500 (the traceback goes
to the log, never into the response)."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid

from .metrics import Metrics
from .settings import TOKEN_ENV, ServeSettings, option

logger = logging.getLogger("hardneg.serve")

OPEN_PATHS = {"/health"}  # answered without the token: a liveness probe carries none


class BodyTooLarge(Exception):
    pass


async def send_error(send, status: int, message: str, request_id: str, headers: dict | None = None) -> None:
    """An error response in the one shape every endpoint uses: {"message", "request_id"}."""
    body = json.dumps({"message": message, "request_id": request_id}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def internal_error(request_id: str) -> str:
    return f"internal error; the server's log has the details under request id {request_id}"


def log_refusal(method: str, path: str, status: int, message: str, request_id: str) -> None:
    logger.warning("%s %s -> %d [%s]: %s", method, path, status, request_id, message)


class Guard:
    """Wraps the app: ``routes`` are the paths metrics label by name (any other is "other")."""

    def __init__(self, app, settings: ServeSettings, metrics: Metrics, routes: set[str]):
        self.app, self.settings, self.metrics, self.routes = app, settings, metrics, routes
        self._token = settings.token.encode() if settings.token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        method, path = scope["method"], scope["path"]
        started, status = time.perf_counter(), {"code": 500, "sent": False}

        async def tracked(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        self.metrics.started()
        try:
            refusal = self._refusal(scope)
            if refusal is None and method in ("POST", "PUT", "PATCH"):
                try:
                    receive = await self._buffered(receive)
                except BodyTooLarge:
                    refusal = (413, f"the request body is over {self.settings.max_body_bytes} bytes, the server's "
                                    f"limit (--{option('max_body_bytes')})", None)
            if refusal is not None:
                code, message, headers = refusal
                log_refusal(method, path, code, message, request_id)
                await send_error(tracked, code, message, request_id, headers)
                return
            await self.app(scope, receive, tracked)
        except Exception:
            logger.exception("%s %s [%s] failed", method, path, request_id)
            if not status["sent"]:
                await send_error(tracked, 500, internal_error(request_id), request_id)
        finally:
            route = path if path in self.routes else "other"
            self.metrics.finished(route, status["code"], time.perf_counter() - started)

    def _refusal(self, scope) -> tuple[int, str, dict | None] | None:
        """(status, message, headers) when the request is refused before it is read."""
        headers = dict(scope.get("headers") or [])
        if self._token is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            challenge = {"www-authenticate": "Bearer"}
            if not given:
                return 401, f"missing bearer token: send 'Authorization: Bearer <token>' (the server's --token or " \
                            f"${TOKEN_ENV})", challenge
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
                return 401, "wrong bearer token", challenge
        kind = headers.get(b"content-type")
        if scope["method"] == "POST" and kind is not None and b"json" not in kind.lower():
            return 415, f"the body must be JSON, sent with 'Content-Type: application/json' (got " \
                        f"{kind.decode('latin-1')!r}; curl: add -H 'Content-Type: application/json')", None
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return 413, f"the request body is {int(length)} bytes; the server's limit is " \
                        f"{self.settings.max_body_bytes} (--{option('max_body_bytes')})", None
        return None

    async def _buffered(self, receive):
        """Read the whole body (refusing one over the limit, whatever Content-Length said), then replay it."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                return _replay([message], receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed
