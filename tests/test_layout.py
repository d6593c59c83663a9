"""The package's layout as a contract: data flows one way through the
subpackages (`nst.PACKAGES`, bottom first), there is no import cycle among
the modules (imports inside functions count), and no module imports
another's underscore names. The import graph is grimp's (the library
import-linter is built on)."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import grimp
import pytest

import nst

PACKAGE = Path(nst.__file__).resolve().parent
#: The package itself (`nst/__init__.py`: __version__, REPOSITORY, the lazy
#: public names) sits just above `base`: `io` and up may read its version.
ROOT_FLOOR = 0.5


def _floor(module: str) -> float:
    if module == "nst":
        return ROOT_FLOOR
    (_, package, *_) = module.split(".") + [""]
    assert package in nst.PACKAGES, f"{module} is in no layer: move it into one of {nst.PACKAGES}"
    return nst.PACKAGES.index(package)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("nst", exclude_type_checking_imports=True)


def test_every_module_is_in_a_layer(graph):
    loose = {m for m in graph.modules if m.count(".") == 1 and m.split(".")[1] not in nst.PACKAGES}
    assert loose == {"nst.__main__"}, "loose modules: put each in a subpackage"


def test_imports_go_down_the_layers_only(graph):
    wrong = []
    for importer in graph.modules - {"nst.__main__"}:
        for imported in graph.find_modules_directly_imported_by(importer):
            if _floor(imported) > _floor(importer):
                (detail, *_) = graph.get_import_details(importer=importer, imported=imported)
                wrong.append(f"{importer}:{detail['line_number']} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle(graph):
    modules = sorted(graph.modules - {"nst"})  # every module imports the package's __init__ first
    cycles = []
    for a, b in itertools.combinations(modules, 2):
        there = graph.find_shortest_chain(importer=a, imported=b)
        back = there and graph.find_shortest_chain(importer=b, imported=a)
        if there and back:
            cycles.append(" -> ".join(there + back[1:]))
    assert not cycles, "\n".join(cycles)


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nst":
                private += [
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not private, "\n".join(private)
