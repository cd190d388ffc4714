"""A job's code package: the objective's project folder, packed at submit into one zip named by its hash.

The zip is deterministic (files sorted, fixed timestamps and modes), so the same folder packs to
the same bytes and the same sha256 on any machine: a rerun finds the package it already has, and
a result traces to the exact code. What must stay true: nothing outside the folder is packed
(links that leave it are skipped), the excludes follow ``.gitignore`` rules, and a folder over
the size limit is refused with its largest files named, before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pathspec

from automl.errors import SpecError

if TYPE_CHECKING:
    from automl.spec.model import JobSpec

# What no project wants shipped: version control, caches, virtual environments, build leftovers.
DEFAULT_EXCLUDES = (
    ".git/",
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    ".venv/",
    "venv/",
    ".env",  # a secrets file (or folder) must not travel into the job store and MLflow
    ".envrc",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".ipynb_checkpoints/",
    "*.egg-info/",
    "node_modules/",
    ".DS_Store",
)
DEFAULT_MAX_MB = 100.0
MAX_MB = 500.0  # Ray's own limit for a working_dir
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can say


@dataclass(frozen=True)
class CodePackage:
    """A packed project folder.

    Attributes:
        sha256: the hash of ``content`` (hex): the package's name everywhere it is stored.
        content: the zip's bytes.
        files: the packed files, relative to the folder, sorted.
        size: the files' total size unpacked, in bytes.
    """

    sha256: str
    content: bytes
    files: tuple[str, ...]
    size: int


def _excludes(folder: Path, extra: tuple[str, ...] | list[str]) -> pathspec.GitIgnoreSpec:
    lines = list(DEFAULT_EXCLUDES)
    gitignore = folder / ".gitignore"
    if gitignore.is_file():
        lines += gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
    lines += list(extra)
    return pathspec.GitIgnoreSpec.from_lines(lines)


def project_files(folder: Path, exclude: tuple[str, ...] | list[str] = ()) -> list[tuple[str, Path, int]]:
    """The files a package of ``folder`` holds: ``(relative name, path, size)``, sorted by name.

    A link is followed only while it stays inside ``folder``; folders are walked without following links.
    """
    root = folder.resolve()
    spec = _excludes(root, exclude)
    found: list[tuple[str, Path, int]] = []
    for current, dirs, names in os.walk(root):
        here = Path(current)
        rel_dir = here.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink() and not spec.match_file(f"{prefix}{d}/"))
        for name in names:
            rel = f"{prefix}{name}"
            path = here / name
            if spec.match_file(rel):
                continue
            try:
                target = path.resolve(strict=True)
            except OSError:  # a broken link
                continue
            if not target.is_file() or not target.is_relative_to(root):
                continue
            found.append((rel, target, target.stat().st_size))
    return sorted(found)


def pack_folder(
    folder: Path, *, exclude: tuple[str, ...] | list[str] = (), max_mb: float = DEFAULT_MAX_MB, field: str = "code.dir"
) -> CodePackage:
    """Pack ``folder`` into a deterministic zip.

    Raises:
        SpecError: the folder is missing, empty after the excludes, or over ``max_mb`` (naming its
            largest files), with ``field`` named.
    """
    if not folder.is_dir():
        raise SpecError(f"{field}: {str(folder)!r} is not a folder")
    files = project_files(folder, exclude)
    if not files:
        raise SpecError(f"{field}: {str(folder)!r} holds no file to ship (after the excludes)")
    total = sum(size for _, _, size in files)
    if total > max_mb * 1024 * 1024:
        largest = sorted(files, key=lambda item: -item[2])[:5]
        named = ", ".join(f"{rel} ({_mb(size)})" for rel, _, size in largest)
        raise SpecError(
            f"{field}: the folder {str(folder)!r} holds {_mb(total)} to ship, over the limit of {max_mb:g} MB; "
            f"the largest files: {named}. Exclude what the trials do not need (code.exclude, .gitignore), "
            "or raise code.max_mb"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for rel, path, _ in files:
            info = zipfile.ZipInfo(rel, date_time=_FIXED_TIME)
            executable = os.access(path, os.X_OK)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=6)
    content = buffer.getvalue()
    return CodePackage(hashlib.sha256(content).hexdigest(), content, tuple(rel for rel, _, _ in files), total)


def unpack(content: bytes, sha256: str, cache: Path) -> Path:
    """The package unpacked under ``cache/<sha256>``, once per machine (later calls find it there).

    The bytes are checked against ``sha256`` first; unpacking goes to a temporary folder renamed
    into place, so a crash or a second process never leaves half a package behind.

    Raises:
        ValueError: the bytes are not the package ``sha256`` names.
    """
    folder = cache / sha256
    if folder.is_dir():
        return folder
    if hashlib.sha256(content).hexdigest() != sha256:
        raise ValueError(f"code package {sha256[:12]}: its bytes do not match its hash")
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=cache))
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            for info in archive.infolist():
                target = (staging / info.filename).resolve()
                if not target.is_relative_to(staging.resolve()):
                    raise ValueError(f"code package {sha256[:12]}: entry {info.filename!r} leaves its folder")
                archive.extract(info, staging)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(target, mode)
        try:
            staging.rename(folder)
        except OSError:  # another process unpacked it first
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def installed_module(path: Path) -> bool:
    """Whether a module's file belongs to an installed distribution (every runner has its own copy)."""
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def job_code(spec: JobSpec, base_dir: Path, objective: Callable[..., Any] | None) -> CodePackage | None:
    """Pack the project folder of ``spec``'s custom objective (``None``: nothing to ship).

    Nothing ships for a built-in trainer, with ``code.ship: false``, or for an objective of an
    installed package when ``code`` names no folder (every runner imports its own installed copy).

    Raises:
        SpecError: the objective's module is not inside the folder, the requirements file is
            missing or not inside it, or the folder is over the size limit.
    """
    import sys

    code = spec.code
    if spec.objective is None or not code.ship:
        return None
    folder = (base_dir / (code.dir or ".")).resolve()
    module_name = spec.objective.partition(":")[0]
    module = sys.modules.get(getattr(objective, "__module__", "") or module_name)
    file_name = getattr(module, "__file__", None) if module is not None else None
    module_file = Path(file_name).resolve() if file_name else None
    if module_file is not None and installed_module(module_file) and "dir" not in code.model_fields_set:
        return None
    relative = Path(*module_name.split("."))
    candidates = (folder / relative.with_suffix(".py"), folder / relative / "__init__.py")
    if not any(c.is_file() for c in candidates):
        found = f" (it is {module_file})" if module_file is not None else ""
        raise SpecError(
            f"objective: module {module_name!r} is not inside the folder that ships with the job, {str(folder)!r}"
            f"{found}; looked for {candidates[0].relative_to(folder)}. Move it there, or set code.dir to the folder "
            "it is imported from"
        )
    if code.requirements is not None:
        requirements = (folder / code.requirements).resolve()
        if not requirements.is_relative_to(folder):
            raise SpecError(f"code.requirements: {code.requirements!r} is outside the folder {str(folder)!r}")
        if not requirements.is_file():
            raise SpecError(f"code.requirements: {code.requirements!r} does not exist in {str(folder)!r}")
        read_requirements(requirements.read_text(encoding="utf-8", errors="replace"))
    return pack_folder(folder, exclude=code.exclude, max_mb=code.max_mb)


def read_requirements(text: str) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped).

    Raises:
        SpecError: a line is a pip option (``-r``, ``-e``, ``--index-url`` ...), which a job's
            environment does not take: list the packages themselves.
    """
    lines = [line.split(" #", 1)[0].strip() for line in text.splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    options = [line for line in requirements if line.startswith("-")]
    if options:
        raise SpecError(f"code.requirements: {options[0]!r} is a pip option; list the packages themselves, one per line")
    from packaging.requirements import InvalidRequirement, Requirement

    for line in requirements:
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise SpecError(f"code.requirements: {line[:200]!r} is not a requirement pip reads: {exc}") from None
    return requirements
