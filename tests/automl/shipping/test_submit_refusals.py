"""What travels with a job, refused at submit when it cannot travel: one line on stderr naming the
field and the reason, exit code 2, and nothing queued or written (issue 16, item 5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from automl.cli import EXIT_INVALID, app

SECRET = "wJalrXUtnFEMI-K7MDENG-do-not-print-me"


def custom(**fields: Any) -> dict[str, Any]:
    return {
        "name": "travels",
        "objective": "train:objective",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        **fields,
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.py").write_text("def objective(params):\n    return params['x']\n")
    (root / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("AUTOML_DATA_CACHE", str(tmp_path / "data-cache"))
    monkeypatch.chdir(tmp_path)
    return root


def refused(spec_file: Path, automl_home: Path) -> str:
    """Submit ``spec_file``; assert it was refused cleanly, by ``validate`` too; return its one line
    (which names the file)."""
    for command in ("submit", "validate"):
        result = CliRunner().invoke(app, [command, str(spec_file)])
        assert result.exit_code == EXIT_INVALID, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert result.stdout == ""
        assert lines[0].startswith(f"error: invalid job spec {spec_file}: "), lines[0]
        assert not automl_home.exists(), "nothing may be written for a job that cannot travel"
    return lines[0]


def write(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_code_folder_over_the_limit_names_its_largest_files(project: Path, automl_home: Path) -> None:
    (project / "checkpoint.pt").write_bytes(os.urandom(1_500_000))
    (project / "notes.bin").write_bytes(os.urandom(300_000))
    line = refused(write(project, custom(code={"max_mb": 1})), automl_home)
    assert "code.dir: " in line and "over the limit of 1 MB" in line, line
    assert "checkpoint.pt (1.4 MB)" in line and "notes.bin (0.3 MB)" in line, line


def test_a_requirements_file_that_is_missing(project: Path, automl_home: Path) -> None:
    line = refused(write(project, custom(code={"requirements": "requirements.txt"})), automl_home)
    assert "code.requirements: 'requirements.txt' does not exist in" in line, line


def test_a_data_path_that_does_not_exist(project: Path, automl_home: Path) -> None:
    line = refused(write(project, custom(data="missing.csv")), automl_home)
    assert "data: data file 'missing.csv' does not exist" in line, line


def test_an_objective_whose_module_is_not_inside_the_packed_folder(project: Path, tmp_path: Path, automl_home: Path) -> None:
    (project / "src").mkdir()
    line = refused(write(project, custom(code={"dir": "src"})), automl_home)
    assert "objective: module 'train' is not inside the folder that ships with the job" in line, line
    assert str(project / "src") in line and "train.py" in line, line


def test_an_s3_object_that_cannot_be_read_hides_the_credentials(
    project: Path, automl_home: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    uri = s3_server.uri("refusals/no-such-object.csv")
    line = refused(write(project, custom(data=uri)), automl_home)
    assert f"data: cannot read {uri}: " in line, line
    assert SECRET not in line
    # A bucket nobody made: refused the same way, naming it.
    missing_bucket = "s3://no-such-bucket-automl/x.csv"
    line = refused(write(project, custom(data=missing_bucket)), automl_home)
    assert f"data: cannot read {missing_bucket}" in line and SECRET not in line, line


def test_a_requirement_pip_could_not_read(project: Path, automl_home: Path) -> None:
    (project / "requirements.txt").write_text("inflection==0.5.1\nnumpy>=>1\n")
    line = refused(write(project, custom(code={"requirements": "requirements.txt"})), automl_home)
    assert "code.requirements: 'numpy>=>1' is not a requirement pip reads" in line, line


def test_an_upload_limit_that_is_not_a_number_names_the_variable(
    project: Path, automl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOML_MAX_DATA_MB", "lots")
    result = CliRunner().invoke(app, ["submit", str(write(project, custom(data="data.csv")))])
    assert result.exit_code == EXIT_INVALID, result.output
    assert "AUTOML_MAX_DATA_MB='lots': give a number of MB above 0 and at most 900" in result.stderr
    assert not automl_home.exists()


def test_a_data_file_over_the_upload_limit_points_to_a_bucket(
    project: Path, automl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOML_MAX_DATA_MB", "0.5")
    (project / "big.csv").write_bytes(b"a\n" + b"1\n" * 400_000)
    line = refused(write(project, custom(data="big.csv")), automl_home)
    assert "data: 'big.csv' is 1 MB, over the 0.5 MB a job uploads with it (AUTOML_MAX_DATA_MB)" in line, line
    assert "name its s3:// URI" in line, line


def test_validate_says_what_travels(project: Path, automl_home: Path) -> None:
    (project / ".env").write_text("SECRET=1\n")
    result = CliRunner().invoke(app, ["validate", str(write(project, custom(data="data.csv")))])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "code: 3 files" in said and "data: " in said, said  # train.py, data.csv, job.yaml: not .env
