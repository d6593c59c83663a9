"""The studio under Colab's ipywidgets 7.7 as well as 8: its Python tests
run again, in a fresh interpreter, with ipywidgets 7.7 first on the path
(`make test` installs it into .venv/ipywidgets7)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WIDGETS7 = Path(sys.prefix) / "ipywidgets7"


@pytest.mark.skipif(not WIDGETS7.is_dir(), reason=f"no ipywidgets 7 at {WIDGETS7}: `make test` installs it")
def test_the_studio_tests_pass_under_ipywidgets_7():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WIDGETS7), os.environ.get("PYTHONPATH", "")])}
    version = subprocess.run(
        [sys.executable, "-c", "import ipywidgets; print(ipywidgets.__version__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.stdout.startswith("7.7."), version.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_studio.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # Every test ran and passed: none skipped (a skip would pass unseen).
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.fullmatch(r"(\d+) passed(, \d+ warnings?)? in .*", summary)
    tests = len(re.findall(r"^def test_", (REPO / "tests" / "test_studio.py").read_text(), re.M))
    assert passed and int(passed.group(1)) >= tests > 0, summary
