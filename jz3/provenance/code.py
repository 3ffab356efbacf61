"""The code a stage runs, as a hash: part of its cache key.

Found statically (nothing is imported): from the stage's functions, the top-level definitions of
their module they use and the modules they import, then every module those import, transitively
(any import anywhere in a module's file counts, lazy ones included). Only modules of the
packages given as `roots` are followed (jz3, and the stage functions' own package); third-party
code is covered by the versions recorded in the manifest. Editing a module a stage can reach
changes that stage's key, and through the manifest hashes the keys of the stages after it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple


@functools.cache
def _package_dir(top: str) -> Optional[Path]:
    mod = sys.modules.get(top)
    f = getattr(mod, "__file__", None)
    if f and Path(f).name == "__init__.py":
        return Path(f).parent
    return None


def _module_file(name: str, roots: Tuple[str, ...]) -> Optional[Path]:
    parts = name.split(".")
    if parts[0] not in roots:
        return None
    base = _package_dir(parts[0])
    if base is None:
        return None
    p = base.joinpath(*parts[1:])
    for cand in (p.with_suffix(".py"), p / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _absolute(module: Optional[str], level: int, current: str, is_pkg: bool) -> str:
    if level == 0:
        return module or ""
    base = current.split(".")
    base = base[: len(base) - level + (1 if is_pkg else 0)]
    return ".".join(base + ([module] if module else []))


def _imports(nodes: Iterable[ast.AST], current: str, is_pkg: bool) -> Set[str]:
    """Dotted names an AST imports: `import a.b` -> a.b; `from a import b` -> a, a.b."""
    out: Set[str] = set()
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Import):
                out.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom):
                mod = _absolute(n.module, n.level, current, is_pkg)
                out.add(mod)
                out.update(f"{mod}.{a.name}" for a in n.names if a.name != "*")
    return out


def _with_parents(name: str) -> List[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


_PARSED: Dict[Path, Tuple[str, ast.Module]] = {}


def _parse(path: Path) -> Tuple[str, ast.Module]:
    """A file's source and AST (parsed again only when its text changed)."""
    src = path.read_text(encoding="utf-8")
    hit = _PARSED.get(path)
    if hit is None or hit[0] != src:
        hit = (src, ast.parse(src, filename=str(path)))
        _PARSED[path] = hit
    return hit


_MODULE_IMPORTS: Dict[Tuple[str, str], Tuple[str, Set[str]]] = {}


def _module_imports(name: str, f: Path) -> Set[str]:
    """Everything module `name` (file `f`) imports anywhere (cached while its text is the same)."""
    src, tree = _parse(f)
    hit = _MODULE_IMPORTS.get((name, str(f)))
    if hit is None or hit[0] != src:
        hit = (src, _imports([tree], name, f.name == "__init__.py"))
        _MODULE_IMPORTS[(name, str(f))] = hit
    return hit[1]


def module_closure(names: Iterable[str], roots: Tuple[str, ...]) -> Dict[str, Path]:
    """Every module of `roots` reachable by imports from `names` (and their parent packages)."""
    seen: Dict[str, Path] = {}
    todo = [p for n in names for p in _with_parents(n)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        f = _module_file(name, roots)
        if f is None:
            continue
        seen[name] = f
        for imp in _module_imports(name, f):
            todo.extend(_with_parents(imp))
    return seen


def _lines(lines: List[str], node: ast.AST) -> str:
    """The whole source lines of a top-level definition (its decorators included)."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "".join(lines[start - 1:node.end_lineno])


def _function_closure(fn: Callable[..., object], roots: Tuple[str, ...]
                      ) -> Tuple[List[str], Set[str]]:
    """The source of the top-level definitions `fn` uses in its module (itself included,
    transitively) and the modules those definitions import or name."""
    mod = fn.__module__
    loaded = getattr(sys.modules.get(mod), "__file__", None)  # also a script's `__main__`
    f = Path(loaded) if loaded else _module_file(mod, roots)
    if f is None or f.suffix != ".py":
        raise ValueError(f"{fn!r}: the source of module {mod} is not a file under {roots}")
    src, tree = _parse(f)
    defs: Dict[str, ast.AST] = {}
    imported: Dict[str, str] = {}  # module-level name -> the module it comes from
    is_pkg = f.name == "__init__.py"
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    defs[t.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
        elif isinstance(node, ast.Import):
            for a in node.names:
                imported[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom):
            m = _absolute(node.module, node.level, mod, is_pkg)
            for a in node.names:
                imported[a.asname or a.name] = f"{m}.{a.name}"
    start = fn.__qualname__.split(".")[0]
    if start not in defs:
        raise ValueError(f"{fn!r}: no top-level definition {start!r} in {f}")
    used: Set[str] = set()
    modules: Set[str] = {mod}
    todo = [start]
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        node = defs[name]
        modules |= _imports([node], mod, is_pkg)
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                if n.id in defs and n.id not in used:
                    todo.append(n.id)
                elif n.id in imported:
                    modules.add(imported[n.id])
    lines = src.splitlines(keepends=True)
    sources = [_lines(lines, defs[n]) for n in sorted(used)]
    modules.discard(mod)  # its other definitions do not count, only those used
    return sources, modules


def code_hash(fns: Iterable[Callable[..., object]], roots: Iterable[str] = ("jz3",)) -> str:
    """A sha256 (hex, 16 chars) of the code `fns` can run: the definitions they use in their
    own modules and the source files of every module of `roots` they reach."""
    h = hashlib.sha256()
    mods: Set[str] = set()
    fns = list(fns)
    tops = tuple(sorted(set(roots) | {fn.__module__.split(".")[0] for fn in fns}))
    for fn in fns:
        sources, m = _function_closure(fn, tops)
        for s in sources:
            h.update(s.encode())
        mods |= m
    for name, f in sorted(module_closure(mods, tops).items()):
        h.update(name.encode() + b"\0" + _parse(f)[0].encode() + b"\0")
    return h.hexdigest()[:16]


def code_files(fns: Iterable[Callable[..., object]], roots: Iterable[str] = ("jz3",)
               ) -> List[Path]:
    """The module files `code_hash` reads for `fns` (besides their own definitions)."""
    fns = list(fns)
    tops = tuple(sorted(set(roots) | {fn.__module__.split(".")[0] for fn in fns}))
    mods: Set[str] = set()
    for fn in fns:
        mods |= _function_closure(fn, tops)[1]
    return sorted(module_closure(mods, tops).values())
