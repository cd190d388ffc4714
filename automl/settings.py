"""Where the service keeps its state, and which external services it talks to.

With no configuration everything is embedded under one state directory (``AUTOML_HOME``,
default ``~/.automl``): the Optuna study database, the MLflow store and artifacts, and Ray
Tune's trial folders. One environment variable per component points it at the real thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

HOME_ENV = "AUTOML_HOME"
STORAGE_ENV = "AUTOML_STORAGE_URL"
DB_ENV = "AUTOML_DB_URL"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
RAY_ADDRESS_ENV = "RAY_ADDRESS"


@dataclass(frozen=True)
class Settings:
    """The resolved locations for one search.

    Attributes:
        home: the state directory.
        db_url: the job store (SQLAlchemy URL): the queue of jobs, their leases and events.
        storage_url: the Optuna RDB storage URL (SQLAlchemy URL).
        tracking_uri: the MLflow tracking URI (also used as the model registry URI).
        artifact_root: where a local MLflow store keeps artifacts (``None`` for a server).
        ray_results: Ray Tune's storage path (trial folders and checkpoints).
        ray_address: a Ray cluster address, or ``None`` for a local Ray instance.
    """

    home: Path
    db_url: str
    storage_url: str
    tracking_uri: str
    artifact_root: str | None
    ray_results: Path
    ray_address: str | None


def state_home() -> Path:
    """The state directory: ``$AUTOML_HOME``, else ``~/.automl``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".automl").expanduser().resolve()


def resolve_settings(
    *,
    db_url: str | None = None,
    tracking_uri: str | None = None,
    storage_url: str | None = None,
    ray_address: str | None = None,
) -> Settings:
    """Resolve each location: the explicit argument, else its environment variable, else embedded.

    Nothing is created here; :func:`prepare` makes the local folders when a search starts.
    """
    home = state_home()
    tracking = tracking_uri or os.environ.get(TRACKING_ENV) or f"sqlite:///{home / 'mlflow.db'}"
    # A tracking server keeps its own artifacts; a database or folder store needs a place for them.
    local_tracking = not tracking.startswith(("http://", "https://", "databricks"))
    db = db_url or os.environ.get(DB_ENV) or f"sqlite:///{home / 'jobs.db'}"
    storage = storage_url or os.environ.get(STORAGE_ENV) or f"sqlite:///{home / 'studies.db'}"
    _check_database_url(db, f"the job database URL ({DB_ENV} or --db-url)")
    _check_database_url(storage, f"the Optuna storage URL ({STORAGE_ENV} or --storage-url)")
    if local_tracking:
        _check_database_url(tracking, f"the MLflow tracking URI ({TRACKING_ENV} or --tracking-uri)")
    return Settings(
        home=home,
        db_url=db,
        storage_url=storage,
        tracking_uri=tracking,
        artifact_root=(home / "artifacts").as_uri() if local_tracking else None,
        ray_results=home / "ray_results",
        ray_address=ray_address or os.environ.get(RAY_ADDRESS_ENV) or None,
    )


def _check_database_url(url: str, what: str) -> None:
    """Refuse a database URL whose password holds an unencoded ``@``.

    SQLAlchemy ends the password at its first ``@``, so ``user:pa@ss@host`` connects to the host
    ``ss@host``: the connection cannot work, and the driver's error would name that "host", the
    rest of the password with it.

    Raises:
        InputError: naming ``what`` (password hidden) and how to write the URL.
    """
    _, sep, rest = url.partition("://")
    userinfo = rest.partition("?")[0].rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    if sep and colon and "@" in password and "/" not in user:
        from automl.errors import InputError

        raise InputError(
            f"{what}: the password in {redact_url(url)} holds an '@', which ends it early; "
            "write each '@' in the password as %40 (and any other reserved character percent-encoded)"
        )


def prepare(settings: Settings) -> None:
    """Create the local folders a search writes to, naming the path when that fails."""
    from automl.errors import AutomlError

    for folder in (settings.home, settings.ray_results):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AutomlError(
                f"cannot create the state directory {folder}: {exc.strerror}. Set {HOME_ENV} to a writable folder."
            ) from exc
        if not os.access(folder, os.W_OK):
            raise AutomlError(f"the state directory {folder} is not writable. Set {HOME_ENV} to a writable folder.")


# Query parameters that carry a credential: libpq's ``password``/``sslpassword``, MySQL's
# ``passwd``, ODBC's ``pwd``, and the token or key some HTTP endpoints take in the query.
SECRET_QUERY_KEYS = frozenset(
    {"password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token", "api_key", "apikey"}
)
HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` as it may be shown or stored: each password, in its user part or its query, is ``***``.

    Every URL the service prints, logs, names in an error or records (MLflow tags, job rows,
    results) goes through here, so one function decides what a password is. A database URL is
    read by SQLAlchemy's parser (the one that connects with it), an ``http(s)://`` tracking URI by
    the standard library's. The user part ends at the last ``@`` before the query, so a password
    holding an unencoded ``@``, ``:`` or ``/`` is hidden whole; the user name stays, as it says who
    connects. A query parameter named like a password (``password``, ``passwd``, ``pwd``,
    ``sslpassword``, ``token``, ...) keeps its name and loses its value.

    Args:
        url: a SQLAlchemy URL, an ``http(s)://`` URI, or anything else (a path is returned as is).

    Returns:
        The URL with each password replaced by ``***``, the rest as given.
    """
    return _redacted(url)[0]


def url_has_password(url: str) -> bool:
    """Whether ``url`` holds a password, in its user part or its query: what :func:`redact_url` hides."""
    return _redacted(url)[1]


def _redacted(url: str) -> tuple[str, bool]:
    """:func:`redact_url`'s text, and whether it hid anything."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, False
    location, qmark, query = rest.partition("?")
    items = [_hide_query_item(item) for item in query.split("&")] if qmark else []
    query_text = qmark + "&".join(text for text, _ in items)
    in_query = any(hidden for _, hidden in items)
    userinfo, at, host_and_path = location.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (at and colon) or "/" in user:  # no password in the user part (a path may hold '@' or ':')
        return f"{scheme}://{location}{query_text}", in_query
    # Parsers split the user part at the first '@' (SQLAlchemy) or end it at the first '/'
    # (urllib): quoted, the whole password is the password. It is hidden, so how it was quoted
    # does not matter.
    quoted = f"{scheme}://{user}:{quote(password, safe='')}@{host_and_path}"
    try:
        if scheme.lower() in {"http", "https"}:
            parts = urlsplit(quoted)
            shown = urlunsplit(parts._replace(netloc=f"{user}:{HIDDEN}@{parts.netloc.rpartition('@')[2]}"))
        else:
            from sqlalchemy.engine import make_url

            shown = make_url(quoted).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - neither parser reads it (a port that is not a number): hide by hand
        shown = f"{scheme}://{user}:{HIDDEN}@{host_and_path}"
    return shown + query_text, True


def _hide_query_item(item: str) -> tuple[str, bool]:
    """One ``key=value`` of a query string, its value hidden if the key names a credential."""
    key, equals, value = item.partition("=")
    name = unquote_plus(key).strip().lower()
    if equals and value and (name in SECRET_QUERY_KEYS or "password" in name or "secret" in name):
        return f"{key}={HIDDEN}", True
    return item, False
