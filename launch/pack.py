"""Tokenize and pack `cfg.data.sources` into memory-mapped token shards under `cfg.data.packed_dir`.

`python launch/pack.py +exp=tiny_pretrain` (see docs/DATA.md). Prints the per-source counts as a
JSON object last. Up-to-date sources are skipped, so re-running is cheap.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry

log = logging.getLogger("jz3.pack")


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.data.packing import pack_sources
    from jz3.data.tokenizers import load_tokenizer
    from jz3.pipeline.manifest import read_manifest

    tok = load_tokenizer(cfg.data.tokenizer)
    out = pack_sources(cfg.data, tok, cfg.data.packed_dir)
    manifest = read_manifest(out) or {}
    log.info("packed data in %s", out)
    print(json.dumps({"packed_dir": str(out), "counts": manifest.get("counts", {})}))


if __name__ == "__main__":
    main()
