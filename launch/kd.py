"""Build a KD set: `python launch/kd.py +exp=tiny_kd` (offline teacher, no network), or
`python launch/kd.py +exp=tiny_kd teacher@stages.kd_seed.teacher=openai
stages.kd_seed.teacher.base_url=http://host:8000/v1 stages.kd_seed.teacher.model=NAME` for any
OpenAI-compatible endpoint (GPT-4 class, or a vLLM server).

Runs the `snippets` and `kd_seed` stages through the pipeline runner (each skipped when its
manifest matches): `${run_dir}/snippets/` and `${run_dir}/kd_seed/` (out/kd.jsonl,
out/rejected.jsonl, manifest.json). A killed run is simply rerun: the teacher journal makes it
send only what was not answered yet. A run in which no request succeeded exits with status 1,
the cause on its last line, and caches nothing. Prints a JSON summary last.
"""

from typing import Any, Dict

from jz3.pipeline.pipeline import command


def summary(out: Dict[str, Any]) -> Dict[str, Any]:
    res = out["result"]
    return {"kd": res["kd"], "written": res["written"], "rejected": res["rejected_count"],
            "reasons": res["stats"]["reasons"], "budget": res["stats"]["budget"],
            "wall_s": res["stats"]["wall_s"], "status": out["status"]}


main = command("snippets", "kd_seed", show=summary)

if __name__ == "__main__":
    main()
