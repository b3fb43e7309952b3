"""The architecture, checked on the source: data walks one way through the packages, private
names stay in their package, dispatch on a kind of dynamics lives in the solve package only,
and no module grows past a size a reader can hold."""

import ast
import pathlib

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowdip"

#: Each unit of the package (a private subpackage or a top-level module) and its layer: a unit
#: may import only from lower layers (problem → objective → dynamics → solve → analysis →
#: sweep → theory → plots → experiments → command line).
LAYERS = {
    "_typing": 0,
    "_problem": 1,
    "_generator": 1,
    "_losses": 1,
    "_metrics": 1,
    "_objective": 2,
    "_linalg": 3,
    "_dynamics": 3,
    "_solve": 4,
    "_analysis": 5,
    "_sweep": 6,
    "_theory": 7,
    "plot": 8,
    "experiments": 9,
    "cli": 10,
    "__main__": 11,
}
MAX_LINES = 450
#: The kinds of dynamics: only the solve package may test a dynamics against them.
KINDS = {
    "AbstractFlow",
    "AbstractDiscreteDynamics",
    "GradientFlow",
    "GradientDescent",
    "ModifiedFlow",
    "InertialFlow",
    "InertialDescent",
    "OptimistixBaseline",
    "OptaxBaseline",
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        yield path, parts, ast.parse(path.read_text(), filename=str(path))


def _unit(parts) -> str | None:
    return None if len(parts) == 2 and parts[1] == "__init__.py" else parts[1].removesuffix(".py")


def _imports(parts, tree):
    """`(line, target parts, names)` of every relative import."""
    pkg = parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - (node.level - 1)]
            target = base + (tuple(node.module.split(".")) if node.module else ())
            yield node.lineno, target, [a.name for a in node.names]


def test_every_unit_has_a_layer():
    units = {_unit(parts) for _, parts, _ in _modules()} - {None}
    assert units <= set(LAYERS), f"units without a layer: {units - set(LAYERS)}"


def test_imports_go_down_the_layers():
    bad = []
    for path, parts, tree in _modules():
        src = _unit(parts)
        if src is None:
            continue
        for line, target, names in _imports(parts, tree):
            targets = [target[1]] if len(target) >= 2 else names
            for dst in targets:
                if dst in LAYERS and dst != src and LAYERS[dst] >= LAYERS[src]:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {src} imports {dst}")
    assert not bad, "\n".join(bad)


def test_no_private_name_crosses_a_package():
    bad = []
    for path, parts, tree in _modules():
        pkg = parts[:-1]
        for line, target, names in _imports(parts, tree):
            # Inside one private subpackage (or one file's own package) privates may be shared.
            same = len(pkg) >= 2 and target[:2] == pkg[:2]
            for name in names:
                if name.startswith("_") and not same:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {name} from {'.'.join(target)}")
    assert not bad, "\n".join(bad)


def test_only_the_solve_package_dispatches_on_a_kind_of_dynamics():
    bad = []
    for path, parts, tree in _modules():
        if parts[1] == "_solve":
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance"):
                continue
            if len(node.args) != 2:
                continue
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if names & KINDS:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: isinstance on {names & KINDS}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_module_size(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES})"


def test_the_project_cites_only_itself():
    """Code, docs and benchmarks cite the project's own theory page, never files outside the
    repository, and speak of the project alone."""
    import re

    pattern = re.compile(r"THEORY\.md|STYLE\.md|\bsessions?\b|\bissues? ?#?\d", re.IGNORECASE)
    bad = []
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]
    files += [*(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
    for path in files:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for match in pattern.finditer(line):
                # The project's own page is docs/theory.md (lower case).
                if match.group(0) != "theory.md":
                    bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)
