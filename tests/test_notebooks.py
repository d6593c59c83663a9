"""The notebooks are code: each runs headless, top to bottom, at a tiny size
(papermill's convention: the cell tagged `parameters` is followed by one
with the values for this run), and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import tensorflow as tf
from conftest import BLOCK13_WEIGHTS

import nst

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: Tiny settings: the real block 1-3 weights where they exist, else random ones.
TINY = {
    "SIZE": 64,
    "STEPS": 3,
    "PRESET": "blocks1-3",
    "WEIGHTS": str(BLOCK13_WEIGHTS) if BLOCK13_WEIGHTS.is_file() else "random",
}


def with_parameters(notebook: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """Insert a cell setting ``values`` after the `parameters` cell."""
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)
    return notebook


def test_there_are_two_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["studio.ipynb", "style_transfer.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"
    params = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(f"{name} = " in params[0].source for name in ("SIZE", "STEPS", "WEIGHTS"))
    badge = f"https://colab.research.google.com/github/{nst.REPOSITORY}/blob/main/notebooks/{path.name}"
    assert badge in notebook.cells[0].source
    assert f"git+https://github.com/{nst.REPOSITORY}" in "".join(c.source for c in notebook.cells)


def test_readme_badges_point_at_the_repository():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"https://colab.research.google.com/github/{nst.REPOSITORY}/blob/main/notebooks/{path.name}" in readme
    assert f"git+https://github.com/{nst.REPOSITORY}" in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless(path, tmp_path, monkeypatch):
    """Each notebook top to bottom. The studio is given no WEIGHTS: offline, as
    under `make studio`, it must take them from $NST_VGG19_WEIGHTS."""
    from nbclient import NotebookClient

    if path.stem == "studio":
        monkeypatch.setenv("NST_VGG19_WEIGHTS", TINY["WEIGHTS"])  # the kernel inherits it
        values = {**{k: v for k, v in TINY.items() if k != "WEIGHTS"}, "AUTORUN": True}
    else:
        values = TINY
    notebook = with_parameters(nbformat.read(path, as_version=4), values)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"  # what the kernel, on this machine, picks
    assert f"running on {kind}" in text
    if path.stem == "style_transfer":
        assert (tmp_path / "stylized.png").is_file() and "best loss" in text
    else:
        assert "finished" in text
