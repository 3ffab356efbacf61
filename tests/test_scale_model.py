"""The scale-model run: `launch/pipeline.py +exp=jz3_7b scale=tiny` runs the paper-
scale experiment end to end on CPU, and what each stage actually used matches the full-size plan
up to the documented shrink.

The full-size plan is the composed `+exp=jz3_7b` (what `pipeline.plan=true` prints). For every
stage the plan lists as enabled, from the scale run's manifest:
- the stage ran, with the plan's inputs (the stage graph is kept);
- every field of its config section equals the plan's, except the fields in `SHRUNK` (the one
  list of the documented shrink; hydra_configs/scale/tiny.yaml explains each); some shrunk
  fields must keep their relation to the plan (`RELATIONS`: widths / 64, heads / 8, lr x 500);
- what it actually built and ran (`used`, read back by the runner from its records): the
  model family and shape of its HF export, the peak learning rate and warmup of its optimizer
  steps, and the step count that its `trainer.epochs` over its data gives;
- the counts it produced: teacher calls as configured, the pool and the selection, every
  snippet synthesized, every benchmark evaluated in its settings.
The scale overlay may set only fields of `SHRUNK` (checked on the YAML itself).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openai_server  # noqa: E402

from jz3.config import compose  # noqa: E402
from jz3.paths import CONFIG_DIR  # noqa: E402

# The pipeline run (about 5 min on a quiet 2-core machine) is set up by the first slow test; the
# suite's 900 s per-test limit is too tight for it on a loaded machine.
LONG = pytest.mark.timeout(2400)
EXP = "jz3_7b"
PAPER_SCALE = ("jz3_7b", "jz3_8b", "jz3_8x7b")
SCALE = "tiny"

# The teacher of the scale-model run: a local OpenAI-compatible server (tests/openai_server.py)
# whose answers are in the KD format and long enough for the filter's length checks, so that a
# tiny synthesizer can learn to write them in a few hundred steps.
def scale_completion(prompt: str, max_tokens: int) -> str:
    n = openai_server.expected_answer(prompt)
    q = f"## Question\nA baker has {n} rolls and sells none of them. How many rolls are left?\n\n"
    if "Code Solution" in prompt:
        body = (q + f"## Code Solution\n```python\nprint({n} - 0)\n```\n```output\n{n}\n```\n"
                f"So \\boxed{{{n}}} rolls are left.")
    else:
        body = q + f"## Solution\nSelling none leaves all of them: {n} - 0 = {n}. The answer is " \
                   f"\\boxed{{{n}}}."
    return " ".join(body.split(" ")[:max_tokens])


@contextlib.contextmanager
def scale_teacher(port: int = 0) -> Iterator[str]:
    """The teacher endpoint for the scale-model run; yields its base URL."""
    saved = openai_server.completion_for
    openai_server.completion_for = scale_completion
    server = openai_server.ChatServer()
    try:
        yield server.start(port)
    finally:
        server.stop()
        openai_server.completion_for = saved


# The documented shrink: `<stage>.<dotted field of its config section>` patterns (fnmatch; the
# pack stage's section is the pretrain stage's `data`). Everything else must equal the plan.
SHRUNK: Tuple[str, ...] = (
    # (1) model sizes, random init
    "*.model.path", "*.model.hidden_size", "*.model.intermediate_size",
    "*.model.num_attention_heads", "*.model.num_key_value_heads", "*.model.num_hidden_layers",
    "*.model.vocab_size",
    # (2) tokenizer: sentencepiece on the shared samples instead of the base model's
    "*.data.tokenizer.*", "pack.tokenizer.*",
    # (3) counts: snippets, teacher calls, pool, targets, eval items, batches, workers
    "snippets.snippets.max_snippets", "kd_*.count", "kd_*.teacher.concurrency",
    "influence.pool", "influence.influence.target_max", "influence.influence.batch_size",
    "*.eval.limit", "ablation.loss_eval.limit",
    "*.trainer.global_batch_size", "*.trainer.micro_batch_size",
    "*.data.num_workers", "pack.num_workers", "*.synth.batch_size", "*.synth.flush_every",
    # (4) projection dimension
    "influence.influence.proj_dim",
    # (5) generation lengths; the synthesizer's rows (concat, 512: more optimizer steps)
    "*.synth.max_new_tokens", "*.synth.tool_max_new_tokens", "*.eval.max_new_tokens",
    "distill.data.seq_len", "distill_boost.data.seq_len",
    "distill.data.packing", "distill_boost.data.packing",
    # (6) bf16 -> fp32
    "*.trainer.precision", "*.synth.precision",
    # (7) vLLM -> HF generation
    "*.synth.backend", "*.eval.backend",
    # (8) data and endpoint the presets leave to the user
    "snippets.snippets.corpus", "*.data.tail_sources", "pack.tail_sources",
    "kd_*.teacher.base_url", "kd_*.teacher.api_key",
    # (9) synthesizer lr x 500 (a random-init tiny synthesizer must learn the format)
    "distill.trainer.lr", "distill_boost.trainer.lr",
    # (10) paragraph snippets (the release rule on the shared corpus starves the tiny synthesizer)
    "snippets.snippets.rule",
)
# Shrunk fields that must keep their relation to the full-size value: (full, scaled) -> ok.
RELATIONS: Dict[str, Callable[[Any, Any], bool]] = {
    "*.model.hidden_size": lambda f, s: s == max(1, f // 64),
    "*.model.intermediate_size": lambda f, s: s == max(1, f // 64),
    "*.model.num_attention_heads": lambda f, s: s == max(1, f // 8),
    "*.model.num_key_value_heads": lambda f, s: s == max(1, f // 8),
    "distill*.trainer.lr": lambda f, s: math.isclose(s, f * 500, rel_tol=1e-9),
    "kd_*.count": lambda f, s: 0 < s <= f,
    "influence.pool": lambda f, s: 0 < s <= f,
    "*.trainer.global_batch_size": lambda f, s: 0 < s <= f,
    "*.synth.backend": lambda f, s: s == "hf",
    "*.eval.backend": lambda f, s: s == "hf",
    "*.trainer.precision": lambda f, s: s == "fp32",
}
HF_ARCH = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
           "mixtral": "MixtralForCausalLM"}


def shrunk(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in SHRUNK)


def flatten(d: Any, prefix: str) -> Iterator[Tuple[str, Any]]:
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from flatten(v, f"{prefix}.{k}")
    else:
        yield prefix, d


def _plan(overrides) -> Dict[str, Dict[str, Any]]:
    from jz3.pipeline.runner import plan_lines
    from jz3.pipeline.stages import STAGES

    out = {}
    for line in plan_lines(compose(list(overrides)), STAGES):
        _, name, body = line.split(" ", 2)
        out[name] = json.loads(body)
    return out


def plan_diff(full: Dict[str, Dict[str, Any]], got_cfg: Dict[str, Any]) -> Tuple[list, list]:
    """(fields that differ outside SHRUNK, shrunk fields that lost their RELATIONS), comparing
    each stage's config in `got_cfg` (stage -> config) with the full-size plan's."""
    diffs, broken = [], []
    for stage, body in full.items():
        got = dict(flatten(got_cfg[stage], stage))
        want = dict(flatten(body["config"], stage))
        for path in sorted(set(got) | set(want)):
            if path not in got or path not in want:
                diffs.append(f"{path}: only in {'the scaled run' if path in got else 'the plan'}")
            elif shrunk(path):
                for pat, ok in RELATIONS.items():
                    if fnmatch.fnmatchcase(path, pat) and not ok(want[path], got[path]):
                        broken.append(f"{path}: {want[path]!r} -> {got[path]!r}")
            elif got[path] != want[path]:
                diffs.append(f"{path}: plan {want[path]!r}, scaled {got[path]!r}")
    return diffs, broken


@pytest.mark.parametrize("exp", PAPER_SCALE)
def test_scaled_plan_keeps_the_recipe(exp, tmp_path):
    """`scale=tiny` after each paper-scale experiment: same stages and inputs, same settings but
    the documented shrink (composition only; the run below checks what actually ran)."""
    full = _plan([f"+exp={exp}", f"run_dir={tmp_path}"])
    small = _plan([f"+exp={exp}", f"scale={SCALE}", f"run_dir={tmp_path}"])
    assert list(small) == list(full)
    assert all(small[s]["inputs"] == full[s]["inputs"] for s in full)
    diffs, broken = plan_diff(full, {s: b["config"] for s, b in small.items()})
    assert not diffs, diffs
    assert not broken, broken


def test_command_line_beats_the_scale_which_beats_the_experiment(tmp_path):
    cfg = compose([f"+exp={EXP}", f"scale={SCALE}", "stages.kd_seed.count=3",
                   f"run_dir={tmp_path}"])
    assert cfg.stages.kd_seed.count == 3 and cfg.run_dir == str(tmp_path)
    cfg = compose([f"scale={SCALE}", f"+exp={EXP}"])  # order on the command line is irrelevant
    assert cfg.stages.kd_boost.count < compose([f"+exp={EXP}"]).stages.kd_boost.count
    assert cfg.run_dir == f"runs/{EXP}-scale-{SCALE}"


def test_scale_overlay_sets_only_shrunk_fields():
    over = yaml.safe_load((CONFIG_DIR / "scale" / f"{SCALE}.yaml").read_text())
    assert set(over) <= {"stages", "run_dir"}, set(over)
    bad = [p for p, _ in flatten(over["stages"], "") if not shrunk(p.lstrip("."))]
    assert not bad, f"hydra_configs/scale/{SCALE}.yaml sets fields outside SHRUNK: {bad}"


@pytest.fixture(scope="module")
def scale_run(project_root, tmp_path_factory):
    """Run the scale-model pipeline (or, with JZ3_SCALE_RUN=<run_dir>, check a finished one)."""
    import os

    full_over = [f"+exp={EXP}"]
    if os.environ.get("JZ3_SCALE_RUN"):
        run = Path(os.environ["JZ3_SCALE_RUN"]).resolve()
        names = [ln.split(" ")[1] for ln in (run / "plan.txt").read_text().splitlines()]
        summary = {"stages": {n: "ran" if (run / n / "manifest.json").exists() else "missing"
                              for n in names}}
        return run, summary, _plan(full_over + [f"run_dir={run}"])
    run = tmp_path_factory.mktemp("scale") / "run"
    t0 = time.time()
    with scale_teacher() as url:
        cp = subprocess.run(
            [sys.executable, "launch/pipeline.py", f"+exp={EXP}", f"scale={SCALE}",
             f"run_dir={run}", f"stages.kd_seed.teacher.base_url={url}",
             f"stages.kd_boost.teacher.base_url={url}"],
            cwd=project_root, capture_output=True, text=True, timeout=1800)
    wall = time.time() - t0
    (run.parent / "pipeline.log").write_text(cp.stdout + "\n----- stderr\n" + cp.stderr
                                             + f"\n----- wall {wall:.1f} s\n")
    assert cp.returncode == 0, (str(run.parent / "pipeline.log"), cp.stderr[-3000:])
    summary = json.loads(cp.stdout.strip().splitlines()[-1])
    return run, summary, _plan(full_over + [f"run_dir={run}"])


def _manifest(run: Path, stage: str) -> Dict[str, Any]:
    """The stage's manifest with its run-folder paths made absolute (they are stored relative)."""
    from jz3.provenance.manifest import read_manifest

    m = read_manifest(run / stage)
    assert m is not None, f"{stage}: no manifest"
    return m


@pytest.mark.slow
@LONG
def test_the_whole_stage_graph_runs(scale_run):
    run, summary, full = scale_run
    assert list(summary["stages"]) == list(full), "the scale run's stages differ from the plan's"
    assert set(summary["stages"].values()) == {"ran"}
    for stage, body in full.items():
        m = _manifest(run, stage)
        assert sorted(m["inputs"]) == sorted(body["inputs"]), stage


@pytest.mark.slow
@LONG
def test_each_stage_ran_its_line_of_the_runs_plan(scale_run):
    """The scale run's own `plan.txt` (written before its first stage) equals every manifest's
    resolved section and inputs, derived values included: influence's seed synthesizer (the
    distill export, named before distill ran) and the synthesize stage's shard count."""
    from jz3.pipeline.runner import read_plan

    run, summary, _ = scale_run
    plan = read_plan(run)
    assert list(plan) == list(summary["stages"])
    for stage, body in plan.items():
        m = json.loads((run / stage / "manifest.json").read_text())  # the config as stored
        assert m["config"] == body["config"], stage
        assert list(m["inputs"]) == body["inputs"], stage
    export = str(Path(os.path.abspath(run)) / "distill" / "out" / "train" / "hf")
    inf = plan["influence"]["config"]
    assert inf["synth"]["model_path"] == inf["model"]["path"] == export
    assert plan["synthesize"]["config"]["shards"] >= 1


@pytest.mark.slow
@LONG
def test_every_setting_but_the_documented_shrink_equals_the_plan(scale_run):
    run, _, full = scale_run
    diffs, broken = plan_diff(full, {s: _manifest(run, s)["config"] for s in full})
    assert not diffs, diffs
    assert not broken, broken


def check_lr_curve(stage: str, tr: Dict[str, Any], lr: float, plan_trainer: Dict[str, Any]) -> None:
    """The logged lr of every recorded step equals the plan's schedule (kind, warmup, stable
    and min-lr ratios, decay clip) over the run's steps, at the run's peak lr. The trainer logs
    step t (1-based) with the lr of optimizer step t - 1 (jz3.train.schedules.multiplier)."""
    import inspect

    from jz3.config.enums import Schedule
    from jz3.train.schedules import multiplier

    args = {k: plan_trainer[k] for k in ("warmup_ratio", "stable_ratio", "min_lr_ratio",
                                         "decay_clip")
            if k in plan_trainer and k in inspect.signature(multiplier).parameters}
    kind = Schedule(plan_trainer["schedule"])
    for step, got in tr["lr_curve"]:
        want = lr * multiplier(step - 1, tr["steps"], kind, **args)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-12), (stage, step, got, want)
    warm = math.ceil(plan_trainer["warmup_ratio"] * tr["steps"])
    assert tr["steps_before_peak"] == max(0, warm - 1), stage


def _training_stages(full) -> Iterator[Tuple[str, Dict[str, Any]]]:
    for stage, body in full.items():
        cfg = body["config"]
        if isinstance(cfg, dict) and {"model", "trainer"} <= set(cfg):
            yield stage, cfg


@pytest.mark.slow
@LONG
def test_each_training_stage_built_its_model_family_and_ran_its_trainer(scale_run):
    run, _, full = scale_run
    trained = 0
    for stage, plan_cfg in _training_stages(full):
        m = _manifest(run, stage)
        cfg, used = m["config"], m.get("used", {})
        tr = used.get("trainer", {})
        pm, pt = plan_cfg["model"], plan_cfg["trainer"]
        if "model" in used:  # the export: family and shape actually built
            um = used["model"]
            assert um["model_type"] == pm["arch"] and um["architectures"] == [HF_ARCH[pm["arch"]]], stage
            for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "vocab_size"):
                assert um[k] == cfg["model"][k], (stage, k)
            for k in ("max_position_embeddings", "rms_norm_eps", "tie_word_embeddings"):
                assert um[k] == pm[k], (stage, k)
            theta = um.get("rope_theta", (um.get("rope_parameters") or {}).get("rope_theta"))
            assert theta == pm["rope_theta"], stage
            if pm["arch"] in ("mistral", "mixtral"):
                assert um.get("sliding_window") == pm["sliding_window"], stage
            if pm["arch"] == "mixtral":
                assert (um["num_local_experts"], um["num_experts_per_tok"]) == (
                    pm["num_local_experts"], pm["num_experts_per_tok"]), stage
            # the head ratio (MHA / GQA) of the full-size model
            assert um["num_attention_heads"] * pm["num_key_value_heads"] == \
                um["num_key_value_heads"] * pm["num_attention_heads"], stage
            trained += 1
        if "lr_curve" in tr:  # the optimizer steps followed the plan's schedule
            check_lr_curve(stage, tr, cfg["trainer"]["lr"], pt)
        if pt["max_steps"] == -1 and "steps" in tr:  # epochs semantics: steps follow the data
            gb = cfg["trainer"]["global_batch_size"]
            assert any(math.ceil(pt["epochs"] * n / gb) == tr["steps"]
                       for n in range(1, tr["steps"] * gb + 1)), (stage, "steps not from epochs")
    assert trained >= 3, "fewer training stages with an export than the recipe has"


@pytest.mark.slow
@LONG
def test_influence_warmup_used_the_plans_lora_optimizer_and_targets(scale_run):
    """The LESS warmup: one checkpoint per planned epoch, the planned AdamW betas / eps (saved
    with each checkpoint), LoRA of the planned rank on exactly the planned modules, the lr
    schedule of the planned trainer, and one feature set per planned target subtask."""
    from types import SimpleNamespace

    from safetensors import safe_open

    from jz3.pipeline.runner import used_evidence

    run, _, full = scale_run
    if "influence" not in full:
        pytest.skip("no influence stage in the plan")
    plan = full["influence"]["config"]
    m = _manifest(run, "influence")
    out = Path(m["result"]["scores"]).parent
    ckpts = sorted((out / "warmup").glob("ckpt-*"))
    assert len(ckpts) == math.ceil(plan["trainer"]["epochs"])
    assert sorted(m["result"]["influence"]["checkpoint_weights"]) == [c.name for c in ckpts]
    for c in ckpts:
        meta = json.loads((c / "meta.json").read_text())
        assert [meta["beta1"], meta["beta2"]] == plan["trainer"]["betas"], c
        assert meta["eps"] == plan["trainer"]["eps"], c
    lora = plan["influence"]["lora"]
    with safe_open(str(ckpts[-1] / "lora.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    a = {k: v for k, v in shapes.items() if ".lora_A." in k}
    assert a and all(v[0] == lora["r"] for v in a.values())
    assert {k.split(".lora_A.")[0].rsplit(".", 1)[1] for k in a} == set(lora["target_modules"])
    tr = used_evidence(SimpleNamespace(log_file=str(out / "warmup" / "train" / "metrics.jsonl")))
    check_lr_curve("influence", tr["trainer"], m["config"]["trainer"]["lr"], plan["trainer"])
    assert m["config"]["trainer"]["lr"] == plan["trainer"]["lr"]
    assert len(m["result"]["influence"]["targets"]) == len(plan["influence"]["targets"])


@pytest.mark.slow
@LONG
def test_counts_follow_the_scaled_config(scale_run):
    run, _, full = scale_run
    for stage in ("kd_seed", "kd_boost"):
        if stage in full and not full[stage]["config"].get("from_file"):
            m = _manifest(run, stage)
            assert m["counts"]["in"] <= m["config"]["count"] and m["counts"]["out"] >= 1, stage
    assert _manifest(run, "kd_seed")["counts"]["in"] == _manifest(run, "kd_seed")["config"]["count"]
    inf = _manifest(run, "influence")
    assert inf["counts"]["pool"] == inf["config"]["pool"]
    top_p = full["influence"]["config"]["influence"]["top_p"]
    if top_p:
        assert 1 <= inf["counts"]["selected"] <= math.ceil(top_p * inf["counts"]["candidates"])
    kdb = _manifest(run, "kd_boost")
    assert kdb["counts"]["in"] == min(kdb["config"]["count"], inf["counts"]["selected"])
    syn = _manifest(run, "synthesize")
    assert syn["counts"]["in"] == _manifest(run, "snippets")["counts"]["out"]
    assert _manifest(run, "filter")["counts"]["out"] >= 1  # the synthesizer wrote usable text
    ev = _manifest(run, "evaluate")
    assert set(ev["metrics"]["eval"]) <= set(full["evaluate"]["config"]["eval"]["benchmarks"])


if __name__ == "__main__":  # the standalone run's teacher: python tests/test_scale_model.py 8765
    with scale_teacher(int(sys.argv[1]) if len(sys.argv) > 1 else 8765) as base_url:
        print(f"READY {base_url}", flush=True)
        while True:
            time.sleep(3600)
