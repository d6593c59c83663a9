"""The package's layout as a contract: data flows one way through the
layers below, with no import cycle (imports inside functions count) and no
module importing another's underscore names; no module is over ~450 lines.
The import graph is grimp's (the well-kept library import-linter is built on)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nst"
#: Top first: a module may import only from layers below its own.
LAYERS = [
    {"__main__"},
    {"cli"},
    {"figures", "studio", "options"},
    {"video", "controls", "many"},
    {"live", "cluster"},
    {"optimize"},
    {"paths"},
    {"optimizers"},
    {"engine"},
    {"targets"},
    {"tiles"},
    {"problem"},
    {"losses"},
    {"features", "scene"},
    {"regions", "device", "normalize", "record", "preview", "flow", "resources", "failure", "wasserstein", "jobs"},
    {"clips", "color", "weights"},
    {"images"},
    {"nst"},  # the package itself: __version__, REPOSITORY
    {"config"},
    {"presets"},
    {"geometry", "backend", "checks"},
    {"cache"},
]
#: What a module may be too big for: none.
MAX_LINES = 450


def _layer(module: str) -> int:
    name = "nst" if module == "nst" else module.removeprefix("nst.")
    (index,) = [i for i, layer in enumerate(LAYERS) if name in layer]
    return index


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("nst", exclude_type_checking_imports=True)


def test_every_module_has_a_layer(graph):
    assert {m.removeprefix("nst.") if m != "nst" else "nst" for m in graph.modules} == set().union(*LAYERS)


def test_imports_go_down_the_layers_only(graph):
    wrong = []
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            if _layer(imported) <= _layer(importer):
                (detail, *_) = graph.get_import_details(importer=importer, imported=imported)
                wrong.append(f"{importer}:{detail['line_number']} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nst":
                private += [f"{path.name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
    assert not private, "\n".join(private)


def test_no_module_is_too_long():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these (over {MAX_LINES} lines): {long}"
