"""What the job commands print besides the views (automl.cli.output): stdout kept for the --json
document alone, and the metric names a status view shows."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from automl.cli.output import metrics_of


def test_json_stdout_holds_the_document_alone_even_when_something_prints_after_the_job() -> None:
    """Ray's threads print notices ("node ... marked dead") on the driver's stdout, sometimes after
    the job has ended; with --json, descriptor 1 stays on stderr and the JSON goes to the real stdout."""
    script = (
        "import os, sys\n"
        "from automl.cli.output import stdout_to_stderr\n"
        "with stdout_to_stderr(True) as real:\n"
        "    print('during the job')\n"
        "    os.write(1, b'(raylet) notice during\\n')\n"
        "    real.write('{\"job\": 1}\\n')\n"
        "os.write(1, b'(raylet) notice after\\n')\n"
        "print('printed after')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == '{"job": 1}\n'
    assert "notice during" in done.stderr and "notice after" in done.stderr and "printed after" in done.stderr


@pytest.mark.parametrize(
    ("spec_yaml", "expected"),
    [
        ("name: j\nmetric: val_loss\n", ["val_loss"]),
        ("name: j\nmetric: [accuracy, latency]\n", ["accuracy", "latency"]),
        ("name: j\n", ["value"]),
        ("", ["value"]),
    ],
)
def test_a_status_view_shows_the_queued_specs_metrics_primary_first(spec_yaml: str, expected: list[str]) -> None:
    assert metrics_of(SimpleNamespace(spec_yaml=spec_yaml)) == expected
