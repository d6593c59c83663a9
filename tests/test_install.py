"""Installing nst, as a new user does: it must leave an installed
TensorFlow alone (of whatever build), and the package must import from
anywhere, even beside a clone whose folder is named nst."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nst

REPO = Path(__file__).resolve().parents[1]


def test_installing_nst_plans_to_change_nothing_else(tmp_path):
    """This venv already has TensorFlow (tensorflow-cpu, from requirements.txt):
    pip's own plan for `pip install .` installs nst and nothing else: no
    `tensorflow` wheel over `tensorflow-cpu`, no newer protobuf or numpy."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            str(report),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    planned = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert planned == {"nst": nst.__version__}


def test_tensorflow_is_an_extra_not_a_requirement():
    """A fresh environment gets TensorFlow from one documented command
    (pip install 'nst[tensorflow]' or 'nst[cpu]'), an existing one keeps its own."""
    from importlib.metadata import requires

    needs = requires("nst") or []
    plain = [r for r in needs if "extra ==" not in r]
    assert not any(r.lower().startswith(("tensorflow", "tf-nightly", "keras", "protobuf")) for r in plain), plain
    assert any(r.startswith("tensorflow") and 'extra == "tensorflow"' in r for r in needs)
    assert any(r.startswith("tensorflow-cpu") and 'extra == "cpu"' in r for r in needs)
    readme = (REPO / "README.md").read_text()
    assert "nst[tensorflow]" in readme


def test_python_in_the_folder_above_a_clone_named_nst_imports_the_package(tmp_path):
    (tmp_path / "nst").symlink_to(REPO, target_is_directory=True)
    done = subprocess.run(
        [sys.executable, "-c", "import nst; print(nst.__version__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == nst.__version__, done.stderr


def test_a_missing_tensorflow_says_how_to_install_one(tmp_path):
    """With TensorFlow hidden, using nst says what to install, in one line."""
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # an import of it now fails as if absent
        "import nst\n"
        "try:\n    nst.stylize\nexcept ImportError as e:\n    print(e)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "nst needs TensorFlow" in done.stdout and "pip install 'nst[tensorflow]'" in done.stdout, done.stderr


def planned_commands(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run on a fresh machine (a venv not yet made)."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_main_job_installs_the_runtime_only_and_the_tests_add_their_tools(tmp_path):
    demo, test, studio, docs = (planned_commands(t, tmp_path) for t in ("demo", "test", "studio", "docs"))
    assert "-r requirements.txt" in demo and "nst --demo" in demo
    assert "requirements-dev" not in demo and "ipywidgets7" not in demo
    assert "requirements-docs" not in demo + test + studio  # the site's tools are the site's alone
    assert "-r requirements-docs.txt" in docs and "mkdocs build --strict" in docs
    assert "-r requirements.txt" in test and "-r requirements-dev.txt" in test and "ipywidgets7" in test
    assert "-m pytest" in test
    assert "-r requirements-dev.txt" not in studio and "grep -E '^(voila|ipykernel)'" in studio
    assert "voila notebooks/studio.ipynb --Voila.config_file_paths=notebooks" in studio
    wanted = {line.split(">")[0] for line in (REPO / "requirements-dev.txt").read_text().splitlines()}
    assert {"voila", "ipykernel"} <= wanted  # what the studio's grep finds
    culling = json.loads((REPO / "notebooks" / "voila.json").read_text())["MappingKernelManager"]
    assert culling["cull_idle_timeout"] > 0 and culling["cull_connected"] is False
