"""Lint, layout and types, kept clean: ``ruff check`` and ``ruff format --check`` on the code, tests and benchmarks,
``mypy`` on the packages.

Both read their settings from pyproject.toml ([tool.ruff], [tool.mypy]), the same ones a run by hand
uses (README, "Tests"); the versions come from the ``dev`` extra. On failure the test prints what
the tool found, so CI's log says what to fix. mypy keeps its cache in .mypy_cache (a repeat run
takes seconds; the first one in a clean clone about 20 s).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINTED = ("automl", "workers", "tests", "benchmarks")
TYPED = ("automl", "workers")


def _run(tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed in {sys.prefix}: install the test tools with pip install -e '.[dev]'")
    return subprocess.run(
        [sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_ruff_finds_nothing() -> None:
    # --no-cache: nothing written into the tree; ruff reads these folders in well under a second.
    done = _run("ruff", "check", "--no-cache", "--output-format", "concise", *LINTED, timeout=120)
    if done.returncode != 0:
        pytest.fail(
            f"ruff check {' '.join(LINTED)} found problems (`ruff check --fix` makes the safe fixes):\n"
            f"{done.stdout}{done.stderr}",
            pytrace=False,
        )


def test_code_is_formatted_as_ruff_formats_it() -> None:
    # One layout for everyone: `ruff format automl workers tests benchmarks` makes it (line length 130, pyproject.toml).
    done = _run("ruff", "format", "--check", "--no-cache", *LINTED, timeout=120)
    if done.returncode != 0:
        pytest.fail(
            f"ruff format --check {' '.join(LINTED)}: files not formatted (run `ruff format {' '.join(LINTED)}`):\n"
            f"{done.stdout}{done.stderr}",
            pytrace=False,
        )


def test_mypy_finds_nothing() -> None:
    done = _run("mypy", *TYPED, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"mypy {' '.join(TYPED)} found problems:\n{done.stdout}{done.stderr}", pytrace=False)
