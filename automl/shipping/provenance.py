"""What a job's result traces back to: the hash of its code package and of its data file.

Recorded on the job row at submit and on the job's MLflow run when it starts (tags, the package as
an artifact, the data file as the run's dataset input), so any result names the exact code and
data it came from. What must stay true: the hashes here are the ones the job row holds.
"""

from __future__ import annotations

from dataclasses import dataclass

CODE_TAG = "automl.code_sha256"
DATA_TAG = "automl.data_sha256"
DATA_SOURCE_TAG = "automl.data_source"


@dataclass(frozen=True)
class Provenance:
    """A job's code package and data file, by hash (each ``None`` when the job has none).

    Attributes:
        code_sha256: the code package's hash.
        code_zip: the package's bytes, logged as an artifact of the job's run.
        data_sha256: the data file's hash.
        data_source: where it came from (the submitter's path, or an ``s3://`` URI).
    """

    code_sha256: str | None = None
    code_zip: bytes | None = None
    data_sha256: str | None = None
    data_source: str | None = None

    @property
    def data_name(self) -> str | None:
        """The data file's name (the last part of its path or URI)."""
        return self.data_source.rstrip("/").rpartition("/")[2] if self.data_source else None

    def tags(self) -> dict[str, str]:
        """The run tags that name the code and the data."""
        tags = {CODE_TAG: self.code_sha256, DATA_TAG: self.data_sha256, DATA_SOURCE_TAG: self.data_source}
        return {name: value for name, value in tags.items() if value}
