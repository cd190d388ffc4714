"""Where the service keeps its state, and which external services it talks to.

With no configuration everything is embedded under one state directory (``AUTOML_HOME``,
default ``~/.automl``): the Optuna study database, the MLflow store and artifacts, and Ray
Tune's trial folders. One environment variable per component points it at the real thing.
Tune's trial folders and checkpoints (``AUTOML_TRIAL_STORAGE``) may be a bucket
(``s3://bucket/prefix``), for a cluster whose machines share no filesystem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

HOME_ENV = "AUTOML_HOME"
STORAGE_ENV = "AUTOML_STORAGE_URL"
DB_ENV = "AUTOML_DB_URL"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
RAY_ADDRESS_ENV = "RAY_ADDRESS"
TRIAL_STORAGE_ENV = "AUTOML_TRIAL_STORAGE"
# The schemes a trial storage URI may have: a bucket of an S3-compatible store (AWS, MinIO, Ceph...),
# through pyarrow's S3 filesystem, which every Ray node has. A plain path (or file://) is a folder.
TRIAL_STORAGE_SCHEMES = ("s3",)


@dataclass(frozen=True)
class Settings:
    """The resolved locations for one search.

    Attributes:
        home: the state directory.
        db_url: the job store (SQLAlchemy URL): the queue of jobs, their leases and events.
        storage_url: the Optuna RDB storage URL (SQLAlchemy URL).
        tracking_uri: the MLflow tracking URI (also used as the model registry URI).
        artifact_root: where a local MLflow store keeps artifacts (``None`` for a server).
        ray_results: the local folder under ``home`` for Tune's trial folders (the default trial storage).
        trial_storage: where Tune keeps the trial folders and checkpoints: a local folder (every node
            must see it at the same path) or ``s3://bucket/prefix`` (every node reads and writes the
            bucket with its own AWS credentials; see :func:`open_trial_storage`).
        ray_address: a Ray cluster address, or ``None`` for a local Ray instance.
    """

    home: Path
    db_url: str
    storage_url: str
    tracking_uri: str
    artifact_root: str | None
    ray_results: Path
    ray_address: str | None
    trial_storage: str = ""

    def __post_init__(self) -> None:
        if not self.trial_storage:  # built by hand without one: Tune's folders under the state directory
            object.__setattr__(self, "trial_storage", str(self.ray_results))

    @property
    def trial_storage_is_local(self) -> bool:
        """Whether the trial storage is a folder on this machine (not a bucket)."""
        return not is_remote_storage(self.trial_storage)


def state_home() -> Path:
    """The state directory: ``$AUTOML_HOME``, else ``~/.automl``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".automl").expanduser().resolve()


def resolve_settings(
    *,
    db_url: str | None = None,
    tracking_uri: str | None = None,
    storage_url: str | None = None,
    ray_address: str | None = None,
    trial_storage: str | None = None,
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
    trials = _trial_storage((trial_storage or os.environ.get(TRIAL_STORAGE_ENV) or "").strip() or str(home / "ray_results"))
    return Settings(
        home=home,
        db_url=db,
        storage_url=storage,
        tracking_uri=tracking,
        artifact_root=(home / "artifacts").as_uri() if local_tracking else None,
        ray_results=home / "ray_results",
        ray_address=ray_address or os.environ.get(RAY_ADDRESS_ENV) or None,
        trial_storage=trials,
    )


def is_remote_storage(value: str) -> bool:
    """Whether a trial storage value names a bucket (``scheme://``, not ``file://``) rather than a folder."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() != "file"


def _trial_storage(value: str) -> str:
    """The trial storage as Tune is given it: an absolute folder, or ``s3://bucket[/prefix]`` as written.

    Raises:
        InputError: a scheme pyarrow's S3 filesystem does not serve, no bucket, or credentials in
            the URI (they would travel to every node and into Tune's saved experiment, in the bucket).
    """
    from automl.errors import InputError

    value = value.strip()
    what = f"the trial storage ({TRIAL_STORAGE_ENV})"
    if not is_remote_storage(value):
        path = value.removeprefix("file://") if value.startswith("file://") else value
        return str(Path(path).expanduser().resolve())
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in TRIAL_STORAGE_SCHEMES:
        raise InputError(
            f"{what}: {redact_url(value)} is neither a folder nor s3://bucket/prefix; "
            f"only {', '.join(s + '://' for s in TRIAL_STORAGE_SCHEMES)} buckets and local folders are supported"
        )
    location = rest.partition("?")[0]
    if "@" in location.partition("/")[0]:
        raise InputError(
            f"{what}: {redact_url(value)} holds credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "on every node instead (a URI is copied to every node and into the bucket)"
        )
    if not location.partition("/")[0]:
        raise InputError(f"{what}: {redact_url(value)} names no bucket; write s3://bucket/prefix")
    return f"{scheme.lower()}://{rest}".rstrip("/")


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
    """Create the local folders a search writes to, naming the path when that fails.

    A bucket is not checked here (this runs for every job store opened): :func:`open_trial_storage`
    checks it when a search starts.
    """
    from automl.errors import AutomlError

    folders = [(settings.home, HOME_ENV)]
    if settings.trial_storage_is_local:
        trials = Path(settings.trial_storage)
        folders.append((trials, HOME_ENV if trials == settings.ray_results else TRIAL_STORAGE_ENV))
    for folder, variable in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AutomlError(
                f"cannot create the state directory {folder}: {exc.strerror}. Set {variable} to a writable folder."
            ) from exc
        if not os.access(folder, os.W_OK):
            raise AutomlError(f"the state directory {folder} is not writable. Set {variable} to a writable folder.")


def open_trial_storage(settings: Settings) -> tuple[str, Any]:
    """Tune's ``storage_path`` and ``storage_filesystem`` for the trial storage, a bucket checked first.

    A folder is handed to Tune as it is (``None``: Tune's local filesystem). A bucket is opened
    with ``pyarrow.fs.FileSystem.from_uri``, which reads the endpoint and the credentials as AWS
    clients do: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (an S3-compatible store such as
    MinIO; ``from_uri`` honours them, a bare ``S3FileSystem()`` does not), ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` (or a profile, or an instance role), ``AWS_REGION``. The filesystem
    Tune is given travels to each trial (and into Tune's saved experiment) with its endpoint and
    without the keys: each process signs with its own credentials, and Tune hands the driver's
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` to its trial actors.

    Raises:
        AutomlError: the bucket cannot be reached, does not exist, or refuses these credentials,
            in one line naming ``AUTOML_TRIAL_STORAGE`` (credentials never shown).
    """
    if settings.trial_storage_is_local:
        return settings.trial_storage, None
    from automl.errors import AutomlError

    uri = settings.trial_storage
    shown = redact_url(uri)
    try:
        import pyarrow.fs

        filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
        bucket = path.partition("/")[0]
        found = filesystem.get_file_info(bucket)
    except (OSError, ValueError) as exc:  # pyarrow's errors are OSError/ArrowException: the store's answer
        raise AutomlError(f"the trial storage {shown} ({TRIAL_STORAGE_ENV}) cannot be used: {_hide_secrets(exc)}") from None
    if found.type == pyarrow.fs.FileType.NotFound:
        raise AutomlError(
            f"the trial storage {shown} ({TRIAL_STORAGE_ENV}): the bucket {bucket!r} does not exist "
            f"at {_endpoint(uri)}; create it, or set {TRIAL_STORAGE_ENV} to an existing bucket"
        )
    return path, filesystem


def _endpoint(uri: str) -> str:
    """The S3 endpoint a bucket URI is reached at, for messages: the URI's, the environment's, or AWS."""
    from urllib.parse import parse_qs

    query = parse_qs(uri.partition("?")[2])
    endpoint = (query.get("endpoint_override") or [""])[0]
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    return redact_url(endpoint) if endpoint else "AWS S3 (set AWS_ENDPOINT_URL for another store)"


def _hide_secrets(exc: BaseException) -> str:
    """An exception's text on one line, any AWS secret in the environment replaced by ``***``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, HIDDEN)
    return text


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
