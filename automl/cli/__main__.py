"""``python -m automl.cli``: the ``automl`` command."""

from automl.cli.app import main

main()
