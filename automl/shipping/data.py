"""A job's data file at submit: found, read once, hashed, and (a local file) kept for upload.

The data file is the built-in trainer's ``trainer.dataset`` when it is a path or an ``s3://`` URI
(a bundled dataset name travels as its name), or a custom objective's ``data``. A local file's
bytes go into the job store with the job; an object in a bucket stays there and only its hash is
recorded, and each node reads it with its own credentials. What must stay true: a file that does
not exist or a bucket object that cannot be read is one line naming the field, at submit, before
anything is written, and no credential appears in it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from automl.errors import SpecError

if TYPE_CHECKING:
    from automl.spec.model import JobSpec

# Bigger files belong in a bucket (name their s3:// URI instead): a database holds under 1 GB in one
# value (SQLite 10^9 bytes, PostgreSQL 1 GiB), and a job store is no file server.
DEFAULT_MAX_UPLOAD_MB = 512.0
MAX_UPLOAD_MB = 900.0
MAX_UPLOAD_ENV = "AUTOML_MAX_DATA_MB"
_DATA_SUFFIXES = (".csv", ".parquet", ".npz")


@dataclass(frozen=True)
class DataFile:
    """A job's data file as checked at submit.

    Attributes:
        field: the spec field that named it (``trainer.dataset`` or ``data``).
        source: the absolute local path, or the ``s3://`` URI.
        name: the file's name.
        sha256: the hash of its bytes.
        size: its size in bytes.
        local_path: where this machine reads it now (the file, or a cached copy of the object).
        upload: whether its bytes go into the job store (a local file) or stay in the bucket.
    """

    field: str
    source: str
    name: str
    sha256: str
    size: int
    local_path: str
    upload: bool

    def content(self) -> bytes:
        """The bytes to store with the job (a local file's)."""
        return Path(self.local_path).read_bytes()


def named_data(spec: JobSpec) -> tuple[str, str] | None:
    """``(field, path or URI)`` of the job's data file, or ``None`` (a bundled dataset, or no data)."""
    if spec.trainer is not None:
        dataset = spec.trainer.dataset
        if dataset.startswith("s3://") or dataset.endswith(_DATA_SUFFIXES) or "/" in dataset:
            return "trainer.dataset", dataset
        return None
    return ("data", spec.data) if spec.data is not None else None


def local_data_path(text: str, base_dir: Path | None) -> Path:
    """A local data path as the spec means it: as given when it exists, else relative to the spec's folder."""
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    return path.resolve()


def read_data_file(spec: JobSpec, base_dir: Path | None) -> DataFile | None:
    """Find, read and hash the job's data file (``None`` when it names none).

    Raises:
        SpecError: the file does not exist, cannot be read, is too big to upload, or the object
            in the bucket cannot be read (the URI and the reason named, no credential).
    """
    named = named_data(spec)
    if named is None:
        return None
    field, text = named
    if text.startswith("s3://"):
        return fetch_object(field, text)
    path = local_data_path(text, base_dir)
    if not path.is_file():
        where = f" (looked in {base_dir})" if base_dir is not None and not Path(text).is_absolute() else ""
        raise SpecError(f"{field}: data file {text!r} does not exist{where}; check the path")
    limit = upload_limit_mb()
    size = path.stat().st_size
    if size > limit * 1024 * 1024:
        raise SpecError(
            f"{field}: {text!r} is {size / 2**20:.0f} MB, over the {limit:g} MB a job uploads with it "
            f"({MAX_UPLOAD_ENV}); put it in a bucket and name its s3:// URI"
        )
    try:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise SpecError(f"{field}: cannot read {text!r}: {exc.strerror or exc}") from None
    return DataFile(field, str(path), path.name, digest.hexdigest(), size, str(path), upload=True)


def upload_limit_mb() -> float:
    """The largest data file a job uploads with it, in MB: ``$AUTOML_MAX_DATA_MB``, else 512 (at most 900).

    Raises:
        InputError: the variable is not a number in (0, 900].
    """
    from automl.errors import InputError

    text = os.environ.get(MAX_UPLOAD_ENV)
    if not text:
        return DEFAULT_MAX_UPLOAD_MB
    try:
        limit = float(text)
    except ValueError:
        limit = float("nan")
    if not 0 < limit <= MAX_UPLOAD_MB:
        raise InputError(f"{MAX_UPLOAD_ENV}={text!r}: give a number of MB above 0 and at most {MAX_UPLOAD_MB:g}")
    return limit


# Objects this process fetched, by URI and the object's size and modification time: a spec is
# checked more than once at submit (parsed, then planned), and each check reads the data.
_FETCHED: dict[tuple[str, int, object], DataFile] = {}


def fetch_object(field: str, uri: str) -> DataFile:
    """Read an object from its bucket into this machine's data cache, hashing it on the way (once
    per process while the object stays the same size and age)."""
    from workers.data_cache import DataFetchError, cache_dir, read_chunks

    name = uri.rstrip("/").rpartition("/")[2]
    if not name:
        raise SpecError(f"{field}: {uri!r} names no object; give s3://bucket/path/to/file.csv")
    stamp = _object_stamp(uri)
    known = _FETCHED.get((uri, *stamp)) if stamp is not None else None
    if known is not None and Path(known.local_path).is_file():
        return dataclasses.replace(known, field=field)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".fetch-", dir=cache)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in read_chunks(uri):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        sha256 = digest.hexdigest()
        target = cache / sha256 / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    except DataFetchError as exc:
        raise SpecError(f"{field}: {exc}") from None
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    fetched = DataFile(field, uri, name, sha256, size, str(target), upload=False)
    if stamp is not None:
        _FETCHED[(uri, *stamp)] = fetched
    return fetched


def _object_stamp(uri: str) -> tuple[int, object] | None:
    """The object's size and modification time (``None`` when they cannot be read: fetch it anyway)."""
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
    except (OSError, ValueError):
        return None
    return (info.size, info.mtime) if info.type == fs.FileType.File and info.size is not None else None
