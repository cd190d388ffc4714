"""What a request may send: a bound on every request body, enforced before a byte is parsed.

What must stay true: a body over its bound is refused with 413 and a line naming the bound, whether
the client declared its length or streamed it; an upload's bound is its route's (code packages,
data files), every other body's is the JSON bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


class BodyTooLarge(HTTPException):
    """Raised from the body's ``receive`` as the bytes come. An HTTP error, so that a route that
    reads the body (FastAPI parsing JSON, which answers 400 to any other error) lets it through to
    be answered 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {describe(limit)}")
        self.limit = limit


def describe(limit: int) -> str:
    return f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit / 2**10:g} KB"


class BodyLimit:
    """ASGI middleware: ``limit_for(path)`` bytes at most per request body."""

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:
            if not started:
                await _refuse(send, exc.limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"error": f"the request body is over the limit of {describe(limit)}", "kind": "BodyTooLarge"}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
