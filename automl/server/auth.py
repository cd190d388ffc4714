"""Who a request is from: its token (``Authorization: Bearer ...``, or the web view's cookie), checked
against the job store's token hashes.

What must stay true: a request without a live token gets 401 and nothing else; a token's text is
compared only by its hash, is never logged, and is never taken from a URL (URLs are logged); a
checked token is trusted for ``auth_cache_s`` seconds at most, so a revoked one stops working
within that time on every server behind a load balancer.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

from automl.store.users import token_hash

if TYPE_CHECKING:
    from automl.store import JobStore
    from automl.store.users import UserView

COOKIE = "automl_token"
UNAUTHORIZED = (
    "a valid token is required: send `Authorization: Bearer <token>` (get one from your admin: automl admin token create NAME)"
)


class TokenCache:
    """Tokens checked in the last ``ttl_s`` seconds, by hash: a busy client costs one query per ``ttl_s``."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, UserView | None]] = {}

    def user(self, store: JobStore, secret: str) -> UserView | None:
        key = token_hash(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        found = store.users.authenticate(secret)
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[key] = (now, found)
        return found


def request_token(request: Request) -> str | None:
    """The token a request carries: its bearer header, else the web view's cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def current_user(request: Request) -> UserView:
    """FastAPI dependency: the user whose live token the request carries, else 401."""
    secret = request_token(request)
    state = request.app.state
    user = state.tokens.user(state.store, secret) if secret else None
    if user is None:
        raise HTTPException(status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return user
