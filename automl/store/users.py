"""Users of ``automl server`` and their API tokens, in the job store.

The only module that issues SQL for ``automl_users`` and ``automl_tokens``. What must stay true:
a token's secret is never stored, only its sha256 (a token is 256 random bits, so a plain hash
cannot be guessed back; no slow hash is needed), and it is shown once, when it is made; a token
that expired, was revoked, or whose user is disabled authenticates no one; the text of a token
never enters an error message or a log line (its id may: it is not a secret).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from automl.errors import AutomlError, InputError
from automl.store.schema import Token, User

ROLES = ("user", "admin")
TOKEN_PREFIX = "aml_"
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.@-]{0,63}")
# last_used_at is written at most this often per token: a busy client must not turn every read into a write.
LAST_USED_EVERY = timedelta(minutes=1)


class UserError(InputError):
    """A user or token operation was asked something that cannot be (exit 2 on the CLI)."""


class UserNotFound(AutomlError):
    """No user (or token) by that name (or id)."""


@dataclass(frozen=True)
class UserView:
    name: str
    role: str
    created_at: datetime
    disabled: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class TokenView:
    """A token as listed: never its secret."""

    id: str
    user: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_user_name(name: str) -> str:
    """``name`` as a user name (lower case letters, digits, ``_.@-``; up to 64 characters)."""
    if not _USER_NAME.fullmatch(name):
        raise UserError(
            f"user name {name[:70]!r}: use 1-64 lower-case letters, digits and _ . @ -, starting with a letter or digit"
        )
    return name


class UserStore:
    """Users and tokens. ``retrying`` runs a unit of work with the job store's retries."""

    def __init__(self, engine: Engine, retrying: Callable[[Callable[[], Any]], Any]) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._retrying = retrying

    # -- users ----------------------------------------------------------------------------

    def add_user(self, name: str, *, role: str = "user") -> UserView:
        """Add a user. Raises :class:`UserError` if the name is taken or the role unknown."""
        check_user_name(name)
        if role not in ROLES:
            raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")

        def work() -> UserView:
            try:
                with self._sessions.begin() as session:
                    user = User(name=name, role=role, created_at=_now(), disabled=False)
                    session.add(user)
                    session.flush()
                    return _user_view(user)
            except IntegrityError:
                raise UserError(f"user {name!r} exists already; see `automl admin user list`") from None

        return self._retrying(work)

    def get_user(self, name: str) -> UserView:
        def work() -> UserView:
            with self._sessions.begin() as session:
                user = session.get(User, name)
                if user is None:
                    raise UserNotFound(f"no user {name[:70]!r}; add one with `automl admin user add NAME`")
                return _user_view(user)

        return self._retrying(work)

    def list_users(self) -> list[UserView]:
        def work() -> list[UserView]:
            with self._sessions.begin() as session:
                return [_user_view(u) for u in session.scalars(select(User).order_by(User.name))]

        return self._retrying(work)

    def set_disabled(self, name: str, disabled: bool) -> UserView:
        """Disable (or enable again) a user: a disabled user's tokens authenticate no one."""
        self.get_user(name)

        def work() -> None:
            with self._sessions.begin() as session:
                session.execute(update(User).where(User.name == name).values(disabled=disabled))

        self._retrying(work)
        return self.get_user(name)

    # -- tokens ---------------------------------------------------------------------------

    def create_token(self, user: str, *, expires_in: timedelta | None = None, label: str | None = None) -> tuple[TokenView, str]:
        """A new token for ``user``: its view and its secret text (shown once; only its hash is kept)."""
        self.get_user(user)
        if expires_in is not None and expires_in <= timedelta(0):
            raise UserError("a token's lifetime must be positive")
        token_id = secrets.token_hex(4)
        secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = _now()

        def work() -> TokenView:
            with self._sessions.begin() as session:
                row = Token(
                    id=token_id,
                    user_name=user,
                    secret_sha256=token_hash(secret),
                    label=(label or None) and label[:128],
                    created_at=now,
                    expires_at=now + expires_in if expires_in is not None else None,
                )
                session.add(row)
                session.flush()
                return _token_view(row)

        return self._retrying(work), secret

    def list_tokens(self, user: str | None = None) -> list[TokenView]:
        def work() -> list[TokenView]:
            with self._sessions.begin() as session:
                query = select(Token).order_by(Token.created_at, Token.id)
                if user is not None:
                    query = query.where(Token.user_name == user)
                return [_token_view(t) for t in session.scalars(query)]

        return self._retrying(work)

    def revoke_token(self, token_id: str) -> TokenView:
        """Revoke a token by its id (the 8 hex digits after ``aml_``): it authenticates no one from now on."""
        token_id = token_id.removeprefix(TOKEN_PREFIX).split("_")[0]

        def work() -> TokenView:
            with self._sessions.begin() as session:
                row = session.get(Token, token_id)
                if row is None:
                    raise UserNotFound(f"no token {token_id[:16]!r}; see `automl admin token list`")
                if row.revoked_at is None:
                    row.revoked_at = _now()
                return _token_view(row)

        return self._retrying(work)

    def authenticate(self, secret: str) -> UserView | None:
        """The user a token's secret belongs to, if the token is live and the user enabled; else ``None``."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 256:
            return None
        digest = token_hash(secret)
        now = _now()

        def work() -> UserView | None:
            with self._sessions.begin() as session:
                row = session.execute(
                    select(Token, User).join(User, User.name == Token.user_name).where(Token.secret_sha256 == digest)
                ).first()
                if row is None:
                    return None
                token, user = row
                if not _token_view(token).is_live(now) or user.disabled:
                    return None
                if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
                    token.last_used_at = now
                return _user_view(user)

        return self._retrying(work)


def _user_view(row: User) -> UserView:
    return UserView(row.name, row.role, row.created_at, bool(row.disabled))


def _token_view(row: Token) -> TokenView:
    return TokenView(row.id, row.user_name, row.label, row.created_at, row.expires_at, row.revoked_at, row.last_used_at)
