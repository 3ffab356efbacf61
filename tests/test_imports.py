"""Layering, checked on the source (AST): lower packages never import the orchestration layer,
stage modules never import provenance, and no two files import each other, even lazily."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("jz3.data", "jz3.teacher", "jz3.synth", "jz3.influence", "jz3.eval", "jz3.train",
         "jz3.models", "jz3.generation", "jz3.prompts", "jz3.parallel", "jz3.config",
         "jz3.kernels", "jz3.provenance", "jz3.ablation")


def _modules() -> Dict[str, Path]:
    mods = {}
    for base, prefix in ((ROOT / "jz3", "jz3"), (ROOT / "kernels", "jz3.kernels")):
        for f in base.rglob("*.py"):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([prefix, *parts])] = f
    return mods


def _imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    """Every jz3 module `path` imports (module level or inside functions)."""
    out: Set[str] = set()
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> Dict[str, Set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(m, p, known) for m, p in mods.items()}


def test_lower_packages_do_not_import_the_pipeline_or_provenance():
    bad = []
    for mod, deps in _graph().items():
        if mod.startswith(LOWER):
            bad += [f"{mod} -> {d}" for d in deps if d.startswith("jz3.pipeline")]
        if mod.startswith(LOWER) and not mod.startswith("jz3.provenance"):
            bad += [f"{mod} -> {d}" for d in deps if d.startswith("jz3.provenance")]
    assert not bad, "\n".join(sorted(bad))


def test_provenance_is_a_leaf():
    g = _graph()
    deps = {d for m, ds in g.items() if m.startswith("jz3.provenance") for d in ds}
    assert deps <= {m for m in g if m.startswith("jz3.provenance")}, deps


def test_no_import_cycles_between_files():
    g = _graph()
    # a package's __init__ re-exporting its own submodules is not a cycle between files
    edges = {m: {d for d in ds if not (m + ".").startswith(d + ".") and
                 not (d + ".").startswith(m + ".")} for m, ds in g.items()}
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    cycles: List[List[str]] = []
    counter = [0]

    def strong(v: str) -> None:  # Tarjan
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"
