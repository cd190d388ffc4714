"""Code packages and data files in the job store, each stored once under the sha256 of its bytes.

The only module that issues SQL for ``automl_blobs``. Every runner already reaches the job
database, so a package stored here needs no other credential to fetch (docs/service.md says why
the job store, not the artifact store). What must stay true: a blob's bytes always hash to its
key (checked on the way in and out), and putting one that is there already changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from automl.errors import AutomlError
from automl.store.schema import Blob

T = TypeVar("T")


class BlobNotFound(AutomlError):
    """No code package or data file has this hash in the job store."""


class BlobStore:
    """Put and get blobs by hash. ``retrying`` runs a unit of work with the job store's retries."""

    def __init__(self, engine: Engine, retrying: Callable[[Callable[[], Any]], Any]) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._retrying = retrying

    def put(self, kind: str, content: bytes) -> str:
        """Store ``content`` (once) and return its sha256."""
        sha256 = hashlib.sha256(content).hexdigest()

        def work() -> None:
            try:
                with self._sessions.begin() as session:
                    if session.get(Blob, sha256) is None:
                        now = datetime.now(UTC).replace(tzinfo=None)
                        session.add(Blob(sha256=sha256, kind=kind, size=len(content), content=content, created_at=now))
            except IntegrityError:  # stored by another submit at the same moment: the same bytes
                pass

        self._retrying(work)
        return sha256

    def has(self, sha256: str) -> bool:
        def work() -> bool:
            with self._sessions.begin() as session:
                return session.scalar(select(Blob.sha256).where(Blob.sha256 == sha256)) is not None

        return bool(self._retrying(work))

    def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``.

        Raises:
            BlobNotFound: none is stored under it.
            AutomlError: what is stored does not hash to it (a damaged row).
        """

        def work() -> bytes | None:
            with self._sessions.begin() as session:
                return session.scalar(select(Blob.content).where(Blob.sha256 == sha256))

        content = self._retrying(work)
        if content is None:
            raise BlobNotFound(f"no code package or data file {sha256[:12]} in the job store")
        content = bytes(content)
        if hashlib.sha256(content).hexdigest() != sha256:
            raise AutomlError(f"the job store's copy of {sha256[:12]} does not match its hash; submit the job again")
        return content
