"""The installed environment: no import name of ours shadows a dependency, and the lock is
consistent with setup.py's ranges."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _py(code: str, cwd: Path, *flags: str) -> dict:
    """Run `python <flags> -c code` in `cwd` (so `cwd` is first on sys.path); code prints JSON."""
    res = subprocess.run([sys.executable, *flags, "-c", code], cwd=cwd, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _index_kernels() -> bool:
    try:
        importlib.metadata.version("kernels")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _index_kernels(), reason="the index's `kernels` package is not installed")
def test_import_kernels_from_the_repository_root_is_the_index_package():
    out = _py("import json, kernels, importlib.metadata as m; "
              "print(json.dumps({'file': kernels.__file__, 'get_kernel': hasattr(kernels, 'get_kernel'), "
              "'version': m.version('kernels')}))", ROOT)
    assert "site-packages" in out["file"] and not out["file"].startswith(str(ROOT / "kernels"))
    assert out["get_kernel"], out


def test_transformers_and_jz3_kernels_import_from_the_repository_root_and_elsewhere(tmp_path):
    code = ("import json, transformers.integrations.hub_kernels, transformers; "
            "from transformers import LlamaConfig; "
            "from jz3.kernels.projection import project_torch, jl_scale; import jz3.kernels as k; "
            "print(json.dumps({'jz3_kernels': k.__file__, 'tf': transformers.__version__}))")
    for cwd in (ROOT, tmp_path):
        out = _py(code, cwd)
        assert Path(out["jz3_kernels"]).resolve() == (ROOT / "kernels" / "__init__.py").resolve()


def test_without_the_index_package_the_folder_is_an_empty_namespace_not_our_code():
    # -I: no site-packages reached through the user's paths; the repository root alone on
    # sys.path, where a stray `kernels/` folder would otherwise win
    code = ("import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p]; "
            f"sys.path.insert(0, {str(ROOT)!r}); import json, kernels; "
            "r = {'file': getattr(kernels, '__file__', None), 'attrs': sorted(a for a in vars(kernels) if not a.startswith('__'))}\n"
            "try:\n    from kernels import projection\n    r['projection'] = True\n"
            "except ImportError:\n    r['projection'] = False\n"
            "print(json.dumps(r))")
    out = _py(code, ROOT, "-I")
    assert out == {"file": None, "attrs": [], "projection": False}, out


def _lock() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            spec, *hashes = line.split()
            name, version = spec.split("==")
            assert hashes and all(h.startswith("--hash=sha256:") for h in hashes), line
            out[name] = version
    return out


def _setup_requirements() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords
          if k.arg in ("install_requires", "extras_require")}
    return kw["install_requires"] + kw["extras_require"]["dev"]


def test_the_lock_pins_every_requirement_within_setup_py_ranges():
    lock = _lock()
    for name in ("torchvision", "torchaudio", "torchcodec"):
        assert name not in lock, f"{name} is CUDA-linked and must stay out of the lock"
    for text in _setup_requirements():
        req = Requirement(text)
        key = req.name.lower().replace("_", "-")
        assert key in lock, f"{req.name} (setup.py) is not in requirements.lock"
        assert req.specifier.contains(Version(lock[key]), prereleases=True), \
            f"requirements.lock has {key}=={lock[key]}, outside setup.py's {req}"


def test_the_environment_is_the_lock():
    # this environment's site-packages only: once setuptools is imported (deepspeed, torch's
    # extension builder), its own vendored packages' metadata is on sys.path too
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    installed = {d.metadata["Name"].lower().replace("_", "-").replace(".", "-"): d.version
                 for d in importlib.metadata.distributions(path=site)}
    lock = _lock()
    if installed.get("transformers") != lock["transformers"]:
        pytest.skip("not the locked environment (make test-latest runs the newest versions)")
    wrong = {n: (v, installed.get(n)) for n, v in lock.items() if installed.get(n) != v}
    assert not wrong, f"locked vs installed: {wrong}"
