"""A job's code package and data file on its MLflow run: tags, the package as an artifact
(``code/<hash>.zip``), and the data file as the run's dataset input (the UI's Dataset column).

What must stay true: nothing here fails a job; the caller runs it through ``ledger.safely``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

from automl.shipping.provenance import Provenance


def log_provenance(client: Any, run_id: str, provenance: Provenance) -> None:
    """Record ``provenance`` on the run ``run_id`` through the MLflow ``client``."""
    for name, value in provenance.tags().items():
        client.set_tag(run_id, name, value)
    if provenance.code_sha256 and provenance.code_zip is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{provenance.code_sha256[:12]}.zip"
            path.write_bytes(provenance.code_zip)
            client.log_artifact(run_id, str(path), "code")
    if provenance.data_sha256 and provenance.data_source:
        client.log_inputs(run_id, datasets=[dataset_input(provenance)])


def dataset_input(provenance: Provenance) -> Any:
    """The job's data file as MLflow's dataset input: its name, where it came from, and its hash
    (the digest column holds 36 characters at most: the first 16 of the sha256; the tag holds it all)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    assert provenance.data_source is not None and provenance.data_sha256 is not None
    with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways": all the same one
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(provenance.data_source)
    dataset = MetaDataset(source=source, name=provenance.data_name, digest=provenance.data_sha256[:16])  # type: ignore[abstract]
    return DatasetInput(dataset=dataset._to_mlflow_entity(), tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value="training")])
