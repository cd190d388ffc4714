"""The code package: what a folder packs into, byte for byte, and what it refuses (automl/shipping/code.py)."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from automl.errors import SpecError
from automl.shipping.code import pack_folder, read_requirements, unpack


def project(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("from helper import shift\n\ndef objective(p):\n    return p['x'] - shift\n")
    (root / "helper.py").write_text("shift = 0.3\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "data.csv").write_text("a,b\n1,2\n")
    return root


def test_the_same_folder_packs_to_the_same_bytes_wherever_and_whenever(tmp_path: Path) -> None:
    first = pack_folder(project(tmp_path / "one"))
    time.sleep(1.1)  # zip timestamps have 2 s resolution; the package must not carry them at all
    second_root = project(tmp_path / "two")
    os.utime(second_root / "train.py", (1e9, 1e9))
    second = pack_folder(second_root)
    assert first.sha256 == second.sha256 and first.content == second.content
    assert first.files == ("data.csv", "helper.py", "pkg/__init__.py", "train.py")
    (second_root / "helper.py").write_text("shift = 0.7\n")
    assert pack_folder(second_root).sha256 != first.sha256  # one byte of code: another package


def test_excludes_follow_gitignore_rules_and_the_defaults(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    (root / ".gitignore").write_text("*.log\nruns/\n!keep.log\n")
    for name in ("out.log", "keep.log", "runs/a.txt", ".git/HEAD", "__pycache__/x.pyc", ".venv/bin/python", "big/skip.bin"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    package = pack_folder(root, exclude=["big/"])
    assert "keep.log" in package.files
    for left_out in ("out.log", "runs/a.txt", ".git/HEAD", "__pycache__/x.pyc", ".venv/bin/python", "big/skip.bin"):
        assert left_out not in package.files


def test_links_that_leave_the_folder_are_not_packed(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (root / "outside.txt").symlink_to(secret)
    (root / "inside.py").symlink_to(root / "helper.py")
    package = pack_folder(root)
    assert "outside.txt" not in package.files and "inside.py" in package.files


def test_a_folder_over_the_limit_is_refused_naming_its_largest_files(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    (root / "weights.bin").write_bytes(os.urandom(700_000))
    (root / "cache.npz").write_bytes(os.urandom(400_000))
    with pytest.raises(SpecError) as caught:
        pack_folder(root, max_mb=1.0)
    message = str(caught.value)
    assert "code.dir" in message and "over the limit of 1 MB" in message
    assert message.index("weights.bin (0.7 MB)") < message.index("cache.npz (0.4 MB)")
    assert "code.exclude" in message


def test_unpack_checks_the_hash_and_keeps_one_copy_per_package(tmp_path: Path) -> None:
    package = pack_folder(project(tmp_path / "p"))
    cache = tmp_path / "cache"
    folder = unpack(package.content, package.sha256, cache)
    assert folder == cache / package.sha256 and (folder / "helper.py").read_text() == "shift = 0.3\n"
    assert unpack(package.content, package.sha256, cache) == folder
    assert [p.name for p in cache.iterdir()] == [package.sha256]  # no staging folder left behind
    with pytest.raises(ValueError, match="do not match its hash"):
        unpack(package.content + b"x", "0" * 64, cache)


def test_unpack_refuses_an_entry_that_leaves_its_folder(tmp_path: Path) -> None:
    import hashlib

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escaped.py", "x = 1\n")
    content = buffer.getvalue()
    with pytest.raises(ValueError, match="leaves its folder"):
        unpack(content, hashlib.sha256(content).hexdigest(), tmp_path / "cache")
    assert not (tmp_path / "escaped.py").exists()


def test_requirements_are_package_lines_and_pip_options_are_refused() -> None:
    assert read_requirements("# tools\ninflection==0.5.1  # pinned\n\nsix\n") == ["inflection==0.5.1", "six"]
    with pytest.raises(SpecError, match=r"'-r other\.txt' is a pip option"):
        read_requirements("-r other.txt\n")
