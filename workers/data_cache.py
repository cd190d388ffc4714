"""A job's data file on whatever node a trial runs: fetched once per node, kept by its hash.

A data file reaches a node one of two ways: uploaded at submit (its bytes travel in Ray's object
store, put there once by the job's driver), or read from a bucket (``s3://...``, through
``pyarrow.fs``, with the node's own credentials). Either way the trial gets a local path under
the node's cache (``$AUTOML_DATA_CACHE``, default ``~/.cache/automl/data``). What must stay true:
a cached file always has the hash the job recorded (checked before it is renamed into place), and
no credential appears in an error.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_ENV = "AUTOML_DATA_CACHE"
CHUNK = 1 << 20


class DataFetchError(RuntimeError):
    """The data file could not be fetched, or is not the file the job recorded."""


@dataclass(frozen=True)
class DataRef:
    """A job's data file, as every node can get it.

    Attributes:
        name: the file's name (its suffix says how to read it: ``.csv``, ``.parquet``, ``.npz``).
        sha256: the hash recorded at submit; a fetched copy must match it.
        source: where it came from: an ``s3://`` URI (read from there) or the submitter's path.
        blob: a Ray object reference to the bytes when they were uploaded at submit, else ``None``.
        endpoint: the S3 endpoint the driver reads buckets at (``AWS_ENDPOINT_URL``, not a secret),
            for a node whose own environment names none; the keys come from the node's environment.
    """

    name: str
    sha256: str
    source: str
    blob: Any = None
    endpoint: str | None = None


def cache_dir() -> Path:
    """This node's data cache: ``$AUTOML_DATA_CACHE``, else ``~/.cache/automl/data``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "automl" / "data").expanduser()


def is_object_uri(text: str) -> bool:
    """Whether ``text`` names an object in a bucket rather than a local path."""
    return text.startswith("s3://")


def read_chunks(uri: str, endpoint: str | None = None) -> Iterator[bytes]:
    """The bytes of an object in a bucket, in chunks (``AWS_*`` variables give the endpoint and keys;
    ``endpoint`` is used when the environment names none).

    Raises:
        DataFetchError: the object cannot be read; the message names the URI and the reason only.
    """
    from pyarrow import fs

    try:
        if endpoint and not os.environ.get("AWS_ENDPOINT_URL"):
            filesystem: fs.FileSystem = fs.S3FileSystem(endpoint_override=endpoint)
            path = uri.removeprefix("s3://")
        else:
            filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            while chunk := stream.read(CHUNK):
                yield chunk
    except (OSError, ValueError) as exc:
        raise DataFetchError(f"cannot read {uri}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The library's message in one line, without anything that looks like a key."""
    text = " ".join(str(exc).split())
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text[:300] or type(exc).__name__


def local_copy(ref: DataRef) -> str:
    """A local path holding the data file ``ref`` names, fetched into this node's cache if not there yet.

    Raises:
        DataFetchError: the file cannot be fetched, or its bytes do not match ``ref.sha256``.
    """
    folder = cache_dir() / ref.sha256
    target = folder / ref.name
    if target.is_file():
        return str(target)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, staging = tempfile.mkstemp(prefix=".fetch-", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in _chunks(ref):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != ref.sha256:
            raise DataFetchError(
                f"{ref.source}: the file now has sha256 {digest.hexdigest()[:12]}, not the {ref.sha256[:12]} the job "
                "recorded at submit; it changed since. Submit the job again to train on the new file"
            )
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return str(target)


def _chunks(ref: DataRef) -> Iterator[bytes]:
    if ref.blob is not None:
        import ray

        yield bytes(ray.get(ref.blob))
    elif is_object_uri(ref.source):
        yield from read_chunks(ref.source, ref.endpoint)
    else:
        raise DataFetchError(f"{ref.source}: the job's data file was not uploaded with it; submit the job again")
