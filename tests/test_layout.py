"""The package's shape: no import cycle (lazy imports inside functions included), no file cut
into parts by banner comments, and every module says what it is for in its first line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lightning_fer"


def _modules(pkg: Path = PKG) -> dict[str, Path]:
    out = {}
    for f in sorted(pkg.rglob("*.py")):
        parts = list(f.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _absolute(node: ast.ImportFrom, package: str) -> str:
    base = node.module or ""
    if node.level:
        up = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(up + ([base] if base else []))
    return base


def _names_of_packages(modules: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Package -> {name it hands on: the module that defines it}: its ``__init__``'s re-exports
    (``from .x import Name``) and a lazy ``_LAZY = {"Name": "pkg.module"}`` table."""
    out: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        table: dict[str, str] = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = _absolute(node, name)
                table |= {a.asname or a.name: base for a in node.names if base in modules and base != name}
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                for k, v in zip(node.value.keys, node.value.values):
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) and v.value in modules:
                        table[k.value] = v.value
        out[name] = table
    return out


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its code, inside functions too:
    ``from a import b`` counts ``a.b`` where that is a module, else the module that package ``a``
    hands ``b`` on from (a re-export or a lazy ``_LAZY`` entry), else ``a``; and
    ``importlib.import_module("a.b")`` with a literal name counts ``a.b``."""
    modules = _modules(pkg)
    handed_on = _names_of_packages(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, package)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules
                           else handed_on.get(base, {}).get(a.name, base) for a in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                targets = [node.args[0].value]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first = last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def _plant(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f'"""{rel}: a module of a planted package."""\n' + text)
    return root / "pkg"


@pytest.mark.parametrize("how", ["function_import", "lazy_name", "import_module"])
def test_the_graph_sees_a_planted_cycle_hidden_inside_a_function(tmp_path, how):
    """The cycle of issue 35: ``low`` imports ``high`` inside a function, and ``high`` imports
    ``low`` back through the package's lazy names (or importlib), never at the top."""
    back = {"function_import": "def f():\n    from pkg.low import Low\n",
            "lazy_name": "def f():\n    from pkg import Low\n",
            "import_module": "import importlib\n\ndef f():\n    return importlib.import_module('pkg.low')\n"}[how]
    pkg = _plant(tmp_path, {"pkg/__init__.py": "_LAZY = {'Low': 'pkg.low'}\n",
                            "pkg/low.py": "class Low:\n    def g(self):\n        from pkg.high import f\n        return f\n",
                            "pkg/high.py": back})
    cycle = find_cycle(import_graph(pkg))
    assert cycle is not None and set(cycle) == {"pkg.low", "pkg.high"}, cycle
    (pkg / "high.py").write_text('"""high: no way back."""\n')
    assert find_cycle(import_graph(pkg)) is None


def test_no_module_under_ensemble_imports_the_zoo():
    graph = import_graph()
    offenders = [m for m, edges in graph.items() if m.startswith("lightning_fer.ensemble") and "lightning_fer.zoo" in edges]
    assert not offenders, offenders


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert graph["lightning_fer.cli"] >= {"lightning_fer.command_line"}
    assert graph["lightning_fer.command_line"] >= {"lightning_fer.build", "lightning_fer.cv", "lightning_fer.export"}
    # The data module reads predict's inputs; it never imports what runs or writes predictions (a layer above it).
    assert not graph["lightning_fer.data.datamodule"] & {"lightning_fer.predict.api", "lightning_fer.predict.runtimes",
                                                          "lightning_fer.predict.writers"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


@pytest.mark.parametrize("module", sorted(_modules()), ids=str)
def test_modules_say_what_they_are_for_and_are_not_cut_by_banners(module):
    """One idea per file, not a line cap: a banner comment (``# -- reading ----``) marks where a file
    holds more than one and was cut by length instead."""
    path = _modules()[module]
    lines = path.read_text().splitlines()
    banners = [i + 1 for i, line in enumerate(lines) if re.match(r"\s*# ?(--|==|\*\*).*(-{6,}|={6,})\s*$", line)]
    assert not banners, f"{path.relative_to(PKG.parent)}: banner comments at lines {banners}: one idea per file"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.split("\n", 1)[0]) > 10, f"{module}: its docstring's first line should say what it is for"


def test_every_module_imports_on_its_own_first():
    """A cycle through a package's ``__init__`` (``predict.inputs -> data.io -> data/__init__ ->
    data.datamodule -> predict.inputs``) that the module graph above does not draw: each module is
    imported first, in a fresh ``lightning_fer``, in one child process."""
    import subprocess
    import sys

    code = ("import importlib, sys\nbad = []\nfor m in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k == 'lightning_fer' or k.startswith('lightning_fer.')]:\n"
            "        del sys.modules[k]\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except ImportError as err:\n        bad.append(f'{m}: {err}')\n"
            "print('\\n'.join(bad))\n")
    names = [m for m in sorted(_modules()) if not m.endswith("__main__")]
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=PKG.parent,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert not out.stdout.strip(), out.stdout
