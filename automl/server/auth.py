"""Who a request is from: its token (``Authorization: Bearer ...``, or the web view's cookie), checked
against the job store's token hashes.

What must stay true: a request without a live token gets 401 and nothing else; a token's text is
compared only by its hash, is never logged, and is never taken from a URL (URLs are logged); a
checked token is trusted for ``auth_cache_s`` seconds at most, so a revoked one stops working
within that time on every server behind a load balancer; a request that changes something and is
authenticated by the web view's cookie alone must come from a page of this server (its ``Origin``,
else its ``Referer``, names the host it was sent to), or it is 403: another site's page cannot make
a logged-in browser cancel a job. Bearer-token clients send no cookie and are not asked.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from automl.store.users import token_hash

if TYPE_CHECKING:
    from automl.store import JobStore
    from automl.store.users import UserView

COOKIE = "automl_token"
UNAUTHORIZED = (
    "a valid token is required: send `Authorization: Bearer <token>` (get one from your admin: automl admin token create NAME)"
)
CROSS_ORIGIN = (
    "a request that changes something, authenticated by the login cookie, must come from this server's own pages "
    "(its Origin header did not name this host); from a script, send `Authorization: Bearer <token>` instead"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


def bearer_token(request: Request) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, if it has one."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def request_token(request: Request) -> str | None:
    """The token a request carries: its bearer header, else the web view's cookie."""
    return bearer_token(request) or request.cookies.get(COOKIE) or None


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this server: its ``Origin`` header
    (else its ``Referer``) names the host the request was sent to. Browsers send ``Origin`` with
    every POST; a request with neither header is not taken for same-origin."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not source or not host or source == "null":
        return False
    return urlsplit(source).netloc.lower() == host.lower()


def user_of(request: Request) -> UserView | None:
    """The user whose live token the request carries, or ``None`` (a page sends the browser to
    ``/login`` then, where the API answers 401). Blocking: it may query the job store."""
    secret = request_token(request)
    state = request.app.state
    return state.tokens.user(state.store, secret) if secret else None


def current_user(request: Request) -> UserView:
    """FastAPI dependency: the user whose live token the request carries, else 401 (403: a change
    asked by another site's page, through the login cookie)."""
    user = user_of(request)
    if user is None:
        raise HTTPException(status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE_METHODS and bearer_token(request) is None and not same_origin(request):
        raise HTTPException(status_code=403, detail=CROSS_ORIGIN)
    return user
