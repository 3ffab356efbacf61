"""Build a KD set: `python launch/kd.py +exp=tiny_kd` (offline teacher, no network), or
`python launch/kd.py +exp=tiny_kd teacher=openai teacher.base_url=http://host:8000/v1
teacher.model=NAME` for any OpenAI-compatible endpoint (GPT-4 class, or a vLLM server).

Writes `${run_dir}/snippets/` (skipped when its manifest matches the config) and
`${run_dir}/kd_seed/` (kd.jsonl, rejected.jsonl, manifest.json); a killed run is simply rerun:
the teacher journal makes it send only what was not answered yet. Prints a JSON summary last.
"""

import json
import logging
import time
from pathlib import Path

from jz3.config import JZ3Config, hydra_entry


def snippets_stage(cfg: JZ3Config, stage_dir: Path) -> Path:
    from jz3.data.records import expand_paths
    from jz3.data.snippets import make_snippets
    from jz3.pipeline.manifest import config_hash, read_manifest, write_manifest

    out = stage_dir / "snippets.jsonl"
    corpus = [(str(f), f.stat().st_size) for f in expand_paths(list(cfg.snippets.corpus))]
    chash = config_hash(cfg.snippets, cfg.teacher.mixture, corpus)
    m = read_manifest(stage_dir)
    if m is not None and m.get("config_hash") == chash and out.exists():
        logging.info("snippets: up to date (%s), skipped", stage_dir)
        return out
    t0 = time.time()
    stats = make_snippets(cfg.snippets, cfg.teacher.mixture, out)
    write_manifest(stage_dir, "snippets", chash,
                   counts={"in": stats.documents, "out": stats.written,
                           "rejected": stats.too_short + stats.corpus_rejected},
                   outputs=[out.name], wall_s=round(time.time() - t0, 3),
                   extra={"snippets": stats.as_dict()})
    return out


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.teacher.kd import build_kd

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run_dir = Path(cfg.run_dir)
    snippets = snippets_stage(cfg, run_dir / "snippets")
    stats = build_kd(cfg, snippets, run_dir / "kd_seed", limit=cfg.teacher.num_seed)
    print(json.dumps({"kd": str(run_dir / "kd_seed" / "kd.jsonl"), "written": stats.written,
                      "rejected": stats.rejected, "reasons": stats.reasons,
                      "budget": stats.budget, "wall_s": stats.wall_s}))


if __name__ == "__main__":
    main()
