"""The package's architecture as a test: every import of ``src/sci2i`` (at the top of a module or
inside a function, both are dependencies) goes to the same layer or a lower one, and the module
graph has no cycle.

Layers, lowest first (README "Layout"):

0. base: ``errors``, ``labels``, ``config``, ``utils`` (checkpoints, run folders, log lines)
1. data and models: ``data``, ``models``, ``toycity`` (the benchmark's generator)
2. losses
3. evaluation, inference and figures: ``eval``, ``infer``, ``figures``
4. training: ``train``, and ``eval.probe`` (the linear probe trains a classifier with the
   training loop's optimiser; it sits with evaluation because it measures a model)
5. the pipeline: ``pipeline``
6. the command line and tools: ``cli``, ``commands``, ``bench``
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {
    "sci2i": 0, "sci2i.errors": 0, "sci2i.labels": 0, "sci2i.config": 0, "sci2i.utils": 0,
    "sci2i.data": 1, "sci2i.models": 1, "sci2i.toycity": 1,
    "sci2i.losses": 2,
    "sci2i.eval": 3, "sci2i.infer": 3, "sci2i.figures": 3,
    "sci2i.train": 4, "sci2i.eval.probe": 4,
    "sci2i.pipeline": 5,
    "sci2i.cli": 6, "sci2i.commands": 6, "sci2i.bench": 6,
}


def modules(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for path in sorted((src / "sci2i").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """``{module: {sci2i modules it imports}}``; ``from pkg import mod`` is an import of ``mod``."""
    mods = modules(src)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # a submodule named in the list is imported itself; anything else comes from base
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("sci2i") and (dep := resolve(target)) and dep != name:
                    deps.add(dep)
        graph[name] = deps
    return graph


def layer(module: str) -> int:
    key = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[key]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    missing = [m for m in modules() if not any(m == k or m.startswith(k + ".") for k in LAYERS)]
    assert not missing, f"modules without a layer in LAYERS: {missing}"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = sorted(f"{m} (layer {layer(m)}) -> {d} (layer {layer(d)})"
                    for m, deps in import_graph().items() for d in deps if layer(d) > layer(m))
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_module_graph_has_no_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_see_what_they_check(tmp_path):
    """A cycle and an upward import written on purpose are both reported (the checks can fail)."""
    pkg = tmp_path / "sci2i"
    for sub in ("data", "train"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("from sci2i.train import b\n")
    (pkg / "train" / "b.py").write_text("def f():\n    from sci2i.data.a import x\n")
    graph = import_graph(tmp_path)
    assert graph["sci2i.data.a"] == {"sci2i.train.b"} and graph["sci2i.train.b"] == {"sci2i.data.a"}
    assert cycles(graph) == [["sci2i.data.a", "sci2i.train.b"]]
    assert layer("sci2i.data.a") < layer("sci2i.train.b")
