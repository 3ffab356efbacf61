"""jz3's kernels, installed as `jz3.kernels` (setup.py maps this folder there).

This folder must never act as the top-level package `kernels`: that name belongs to the package
index's `kernels` (the Hugging Face kernel hub client), which transformers imports. Python puts
the repository root on `sys.path` whenever it starts there (`python -m ...`, `python -c`, pytest),
and a folder there with an `__init__.py` wins over site-packages. So, imported under the name
`kernels`, this file steps aside. It loads the next `kernels` on `sys.path` outside this
repository in its place: the import statement returns whatever `sys.modules["kernels"]` holds once
this body has run. When there is none, it leaves an empty module without `__file__` or
`__version__`, exactly what a stray folder without `__init__.py` gives (PEP 420): `from kernels
import X` fails, and transformers' availability probe reads it as "not installed".
"""

if __name__ == "kernels":
    import importlib.machinery
    import importlib.util
    import os
    import sys
    import types

    _repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _repo]
    _spec = importlib.machinery.PathFinder.find_spec("kernels", _rest)
    if _spec is None or _spec.loader is None:
        _empty = types.ModuleType("kernels", "No `kernels` package is installed (this folder is "
                                  "jz3.kernels).")
        _empty.__path__ = []
        sys.modules["kernels"] = _empty
    else:
        _real = importlib.util.module_from_spec(_spec)
        sys.modules["kernels"] = _real
        try:
            _spec.loader.exec_module(_real)
        except BaseException:
            sys.modules.pop("kernels", None)
            raise
