"""The spec's text forms: a mapping or a file in (:func:`parse_spec`, :func:`load_spec`, which
runs both steps of the check), YAML out (:func:`spec_to_yaml`).

What must stay true: a spec file that loads has passed both steps, and no text written from a
spec holds a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from automl.errors import SpecError
from automl.spaces import check_structure, format_validation_error, read_yaml
from automl.spec.checks import check_spec
from automl.spec.model import JobSpec


def parse_spec(raw: Any, *, source: str | None = None) -> JobSpec:
    """Validate a mapping (parsed YAML) into a :class:`JobSpec`.

    Raises:
        SpecError: listing every field that is wrong.
    """
    if not isinstance(raw, Mapping):
        raise SpecError(f"expected a mapping of fields at the top level, got {type(raw).__name__}", source=source)
    try:
        check_structure(raw, "(the spec)")
    except SpecError as exc:
        raise SpecError(exc.problems, source=source) from None
    try:
        return JobSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc), source=source) from None


def load_spec(path: str | Path) -> JobSpec:
    """Read, parse and fully check the job spec at ``path`` (see :func:`check_spec`).

    Raises:
        SpecError: the file is missing or unreadable, or a field is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"cannot read {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        raw = read_yaml(text, field="")
    except SpecError as exc:
        raise SpecError(exc.problems, source=str(path)) from None
    spec = parse_spec(raw, source=str(path))
    if spec.tracking.tracking_uri and _has_password(spec.tracking.tracking_uri):
        # The spec is stored with the job and logged to MLflow: a password in it would be too.
        raise SpecError(
            "tracking.tracking_uri: holds a password; a job file is stored and logged, so give the URI "
            "with its password in MLFLOW_TRACKING_URI (or --tracking-uri) instead",
            source=str(path),
        )
    try:
        check_spec(spec, base_dir=path.parent)
    except SpecError as exc:
        raise SpecError(exc.problems, source=exc.source or str(path)) from None
    return spec


def _has_password(uri: str) -> bool:
    from automl.settings import url_has_password  # the same reading of a URL as redact_url's

    return url_has_password(uri)


def spec_to_yaml(spec: JobSpec) -> str:
    """The spec as YAML, every default filled in: what the job actually ran with.

    A password in ``tracking.tracking_uri`` (given to :func:`automl.search` in code) is hidden:
    this text is stored with the job and logged to MLflow.
    """
    from automl.settings import redact_url

    data = spec.model_dump(mode="json")
    if spec.tracking.tracking_uri:
        data["tracking"]["tracking_uri"] = redact_url(spec.tracking.tracking_uri)
    return yaml.safe_dump(data, sort_keys=False)
