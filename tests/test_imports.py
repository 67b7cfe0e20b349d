"""The package's import graph: no module under ditflow/ (nor the CLI in commands/) takes part in an import circle,
counting every import, at the top of a file or inside a function, typing-only or not."""
import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"ditflow": ROOT / "ditflow", "ditflow.cli": ROOT / "commands"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `name` (at `path`) imports, absolute or relative, anywhere in the file."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import mod` imports the module; `from pkg import name` runs pkg's __init__ for the name
            subs = [f"{module}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in known] + ([module] if any(t not in known for t in subs) else [])
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` imports a.b.c, or the package that holds it
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def test_no_import_circle():
    found = modules()
    graph = {name: imported(name, path, set(found)) for name, path in found.items()}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_config_imports_nothing_of_the_backbones():
    found = modules()
    deps = imported("ditflow.config", found["ditflow.config"], set(found))
    assert not {d for d in deps if d.startswith("ditflow.backbones")}


def test_no_test_imports_another_test_module():
    """Tests share plain helpers through tests/helpers.py and fixtures through conftest.py, never by importing
    a test module (or conftest, which pytest loads itself)."""
    bad = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("test_") or n == "conftest"]
    assert not bad
