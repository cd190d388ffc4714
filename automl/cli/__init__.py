"""The ``automl`` command, a front door: its commands (:mod:`~automl.cli.app`), how a command
ends (:mod:`~automl.cli.exits`), what a job command prints while a job runs
(:mod:`~automl.cli.output`), the tables and JSON (:mod:`~automl.cli.views`) and the progress
bar (:mod:`~automl.cli.progress`, which the Python API's ``progress=True`` uses too).

What must stay true: importing it loads no heavy library (``automl --help`` is instant); the
console script is ``automl.cli:main`` and ``python -m automl.cli`` runs the same command.
"""

from __future__ import annotations

from automl.cli.app import app, main
from automl.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_OK

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "app", "main"]
