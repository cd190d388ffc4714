"""Driving Debian's Chromium through Playwright in a test (no pytest needed here).

The browser is ``/usr/bin/chromium`` (``scripts/ensure-chromium.sh`` installs it; ``AUTOML_CHROMIUM``
names another); Playwright's own browser downloads are never used (``playwright install`` needs the
internet). :func:`browser_problem` says why a browser cannot be driven here; a test fails on that
in CI, which must run it, and skips elsewhere (:func:`require_browser`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("AUTOML_CHROMIUM", "/usr/bin/chromium")
# Where browser tests keep their screenshots (see :func:`screenshots`).
ARTIFACTS_ENV = "AUTOML_TEST_ARTIFACTS"
REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def browser_problem() -> str | None:
    """Why the browser cannot be driven here, or ``None`` when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package 'playwright' is missing: pip install -e '.[dev]' (do not run 'playwright install')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}: run 'bash scripts/ensure-chromium.sh' (as root it installs Debian's 'chromium')"
    return None


def require_browser(what: str) -> None:
    """Fail on CI when the browser is missing (CI must run ``what``); skip, saying why, elsewhere."""
    import pytest

    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} cannot run: {problem}", pytrace=False)
    pytest.skip(problem)


def launch(playwright: Any, profile: Path, **options: Any) -> Any:
    """A Chromium context on a fresh profile folder (nothing remembered from another run)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options
    )


def screenshots(test: str) -> Path:
    """Where a test saves its screenshots, emptied first: ``$AUTOML_TEST_ARTIFACTS/<test>``, by default
    ``test-artifacts/<test>`` in the repository (ignored by git; CI keeps the folder as its artifacts).

    ``AUTOML_SCREENSHOTS``, this variable's first name, is read when the new one is not set.
    """
    import shutil

    root = os.environ.get(ARTIFACTS_ENV) or os.environ.get("AUTOML_SCREENSHOTS")
    folder = (Path(root) if root else REPO / "test-artifacts") / test
    shutil.rmtree(folder, ignore_errors=True)  # only this run's screenshots (no failure.png from an older one)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
