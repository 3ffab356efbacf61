"""Build a KD set: `python launch/kd.py +exp=tiny_kd` (offline teacher, no network), or
`python launch/kd.py +exp=tiny_kd teacher@stages.kd_seed.teacher=openai
stages.kd_seed.teacher.base_url=http://host:8000/v1 stages.kd_seed.teacher.model=NAME` for any
OpenAI-compatible endpoint (GPT-4 class, or a vLLM server).

Runs the `snippets` and `kd_seed` stages through the pipeline runner (each skipped when its
manifest matches): `${run_dir}/snippets/` and `${run_dir}/kd_seed/` (out/kd.jsonl,
out/rejected.jsonl, manifest.json). A killed run is simply rerun: the teacher journal makes it
send only what was not answered yet. Prints a JSON summary last.
"""

import json
import logging

from jz3.config import JZ3Config, hydra_entry


@hydra_entry
def main(cfg: JZ3Config) -> None:
    from jz3.config.validate import check_stages
    from jz3.pipeline.pipeline import run_single

    check_stages(cfg, ["snippets", "kd_seed"])  # before the first stage runs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if cfg.pipeline.plan:
        run_single(cfg, "snippets")
        run_single(cfg, "kd_seed")
        return
    run_single(cfg, "snippets")
    out = run_single(cfg, "kd_seed")
    res = out["result"]
    print(json.dumps({"kd": res["kd"], "written": res["written"],
                      "rejected": res["rejected_count"], "reasons": res["stats"]["reasons"],
                      "budget": res["stats"]["budget"], "wall_s": res["stats"]["wall_s"],
                      "status": out["status"]}))


if __name__ == "__main__":
    main()
