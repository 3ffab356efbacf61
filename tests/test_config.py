"""Config composition: presets compose, each stage gets its own sections, misspelt keys and
wrong types are errors naming the key, and every experiment's plan parses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jz3.config import compose
from jz3.config.enums import Arch, Schedule, TrainMode
from jz3.paths import CONFIG_DIR


def _pipeline_experiments() -> list:
    """Every experiment preset of the pipeline's root config. A preset with its own root
    schema (keys outside `JZ3Config`) must say so in a `Schema:` line."""
    import dataclasses

    import yaml

    from jz3.config.root import JZ3Config

    root = {f.name for f in dataclasses.fields(JZ3Config)} | {"defaults", "hydra"}
    out = []
    for p in sorted((CONFIG_DIR / "exp").glob("*.yaml")):
        keys = set(yaml.safe_load(p.read_text()) or {})
        if keys <= root:
            out.append(p.stem)
        else:
            assert "Schema:" in p.read_text(), f"{p}: keys {keys - root} not in JZ3Config"
    return out


EXPERIMENTS = _pipeline_experiments()


@pytest.mark.parametrize("exp,arch,layers", [
    ("jz3_7b", Arch.mistral, 32), ("jz3_8b", Arch.llama, 32), ("jz3_8x7b", Arch.mixtral, 32),
    ("tiny_pretrain", Arch.llama, 2),
])
def test_presets_compose(exp, arch, layers):
    cfg = compose([f"+exp={exp}"])
    m = cfg.stages.pretrain.model
    assert m.arch == arch and m.num_hidden_layers == layers
    assert cfg.exp_name == exp and cfg.run_dir == f"runs/{exp}"


def test_synthesizer_stages_have_their_own_model_and_trainer():
    s = compose(["+exp=jz3_7b"]).stages
    for st in (s.distill, s.influence, s.distill_boost):
        assert st.model.name == "deepseekmath-7b" and st.model.num_hidden_layers == 30
        assert st.data.seq_len == 2048
    for st in (s.distill, s.distill_boost):
        t = st.trainer
        assert (t.mode, t.lr, t.epochs, t.global_batch_size, t.schedule, t.weight_decay,
                t.warmup_ratio) == (TrainMode.distill, 1e-5, 5, 32, Schedule.cosine, 0.1, 0.0)
    w = s.influence.trainer
    assert (w.lr, w.epochs, w.global_batch_size, list(w.betas)) == (2e-5, 4, 32, [0.9, 0.999])
    assert s.pretrain.model.name == "mistral-7b" and s.sft.model.name == "mistral-7b"
    p = s.pretrain.trainer
    assert (p.lr, p.global_batch_size, p.weight_decay, list(p.betas), p.schedule, p.epochs) == (
        1e-5, 512, 0.0, [0.9, 0.999], Schedule.wsd, 1)
    assert p.warmup_ratio + p.stable_ratio == pytest.approx(0.85)  # decay starts at 85%
    assert s.pretrain.data.natural_mix and s.pretrain.data.seq_len == 2048  # CoT/tool by size
    assert s.kd_seed.count + s.kd_boost.count == 9300
    assert s.pretrain_raw.enabled is False and s.ablation.enabled is False
    syn = s.synthesize.synth
    assert (syn.temperature, syn.max_new_tokens, syn.tool_temperature, syn.tool_top_p,
            syn.tool_max_new_tokens) == (1.0, 2500, 0.1, 0.95, 5000)


def test_one_stage_override_touches_only_that_stage():
    s = compose(["stages.distill.trainer.lr=0.5", "model@stages.sft.model=tiny_mixtral"]).stages
    assert s.distill.trainer.lr == 0.5 and s.distill_boost.trainer.lr != 0.5
    assert s.sft.model.arch == Arch.mixtral and s.pretrain.model.arch == Arch.llama


def test_real_model_numbers():
    m = compose(["+exp=jz3_8b"]).stages.pretrain.model
    assert (m.vocab_size, m.hidden_size, m.intermediate_size, m.num_key_value_heads) == (
        128256, 4096, 14336, 8)
    assert m.rope_theta == 500000.0
    mx = compose(["+exp=jz3_8x7b"]).stages.pretrain.model
    assert mx.num_local_experts == 8 and mx.num_experts_per_tok == 2


def test_misspelt_key_names_it():
    with pytest.raises(Exception, match="lrr"):
        compose(["stages.pretrain.trainer.lrr=1"])
    with pytest.raises(Exception, match="lrr"):
        compose(["+stages.pretrain.trainer.lrr=1"])
    with pytest.raises(Exception, match="trainer"):  # no root-level trainer any more
        compose(["trainer.lr=1"])


def test_wrong_type_names_key():
    with pytest.raises(Exception, match="max_steps"):
        compose(["stages.pretrain.trainer.max_steps=abc"])
    with pytest.raises(Exception, match="schedule"):
        compose(["stages.distill.trainer.schedule=cosinee"])


def test_print_config_from_launcher(project_root):
    out = subprocess.run([sys.executable, "launch/pretrain.py", "--cfg", "job", "+exp=jz3_7b"],
                         cwd=project_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mistral-7b" in out.stdout and "hidden_size: 4096" in out.stdout


def _plan(cfg) -> dict:
    from jz3.pipeline.runner import plan_lines
    from jz3.pipeline.stages import STAGES

    out = {}
    for line in plan_lines(cfg, STAGES):
        tag, name, body = line.split(" ", 2)
        assert tag == "[plan]"
        out[name] = json.loads(body)
    return out


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_experiment_plan_parses(exp, tmp_path):
    cfg = compose([f"+exp={exp}", f"run_dir={tmp_path}"])
    plan = _plan(cfg)
    if not cfg.pipeline.stages:  # a preset that selects stages (smol_ablation) runs only those
        assert list(plan)[:3] == ["snippets", "kd_seed", "distill"]
        assert plan["pack"]["config"] == plan["pretrain"]["config"]["data"]  # pack = its data
    for name, body in plan.items():
        assert body["section"].startswith("stages.") and isinstance(body["config"], dict), name
    assert ("pretrain_raw" in plan) == ("ablation" in plan) == cfg.stages.pretrain_raw.enabled


def test_plan_shows_paper_values_and_runs_nothing(project_root, tmp_path):
    cp = subprocess.run([sys.executable, "launch/pipeline.py", "+exp=jz3_7b", "pipeline.plan=true",
                         f"run_dir={tmp_path}/run"], cwd=project_root, capture_output=True,
                        text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    lines = [x for x in cp.stdout.splitlines() if x.startswith("[plan] ")]
    plan = {x.split(" ", 2)[1]: json.loads(x.split(" ", 2)[2]) for x in lines}
    # the shipped jz3_7b leaves the checkpoint folders to the user: the plan warns
    for key in ("stages.distill.model", "stages.distill_boost.model", "stages.pretrain.model"):
        assert f"{key}.path is null" in cp.stderr, key
    assert plan["distill"]["config"]["model"]["name"] == "deepseekmath-7b"
    assert plan["distill"]["config"]["trainer"]["epochs"] == 5
    assert plan["pretrain"]["config"]["model"]["name"] == "mistral-7b"
    assert plan["pretrain"]["config"]["trainer"]["global_batch_size"] == 512
    assert plan["pretrain"]["inputs"] == ["filter", "pack"]
    assert plan["kd_seed"]["config"]["count"] == 8000
    assert plan["synthesize"]["config"]["synth"]["backend"] == "vllm"
    assert "gsm8k" in plan["evaluate"]["config"]["eval"]["benchmarks"]
    run = tmp_path / "run"  # nothing ran, nothing written (but Hydra's own log folder)
    assert not run.exists() or {p.name for p in run.iterdir()} <= {".hydra_runs"}


PRETRAIN_MODEL = {"jz3_7b": "mistral-7b", "jz3_8b": "llama-3-8b", "jz3_8x7b": "mixtral-8x7b"}


@pytest.mark.parametrize("exp", sorted(PRETRAIN_MODEL))
def test_plan_matches_the_conformance_table(exp, tmp_path):
    """The key values of docs/RECIPE.md "Conformance with the release", as the plan prints them."""
    plan = _plan(compose([f"+exp={exp}", f"run_dir={tmp_path}"]))
    cfg = {k: v["config"] for k, v in plan.items()}
    # stage graph: no separate sft run, no ablation by default; evaluate takes pretrain's export
    assert "sft" not in plan and "pretrain_raw" not in plan and "ablation" not in plan
    assert plan["evaluate"]["inputs"] == ["pretrain"] and cfg["evaluate"]["after_sft"] is False
    sn = cfg["snippets"]["snippets"]
    assert (sn["size"], sn["rule"], sn["default_kind"]) == (1000, "release", "textbook")
    # teacher: 8,000 + 1,300 calls, CoT sampling of synthesis_cot/generate_oai.py
    assert (cfg["kd_seed"]["count"], cfg["kd_boost"]["count"]) == (8000, 1300)
    for kd in ("kd_seed", "kd_boost"):
        t = cfg[kd]["teacher"]
        assert (t["kind"], t["model"], t["temperature"], t["top_p"], t["max_tokens"]) == (
            "openai", "gpt-4o", 0.6, 1.0, 2500)
        assert cfg[kd]["from_file"] is None
    # synthesizer: DeepSeekMath-7B-RL, sh/synthesis/train.sh
    for st in ("distill", "distill_boost"):
        c = cfg[st]
        t = c["trainer"]
        assert c["model"]["name"] == "deepseekmath-7b" and c["data"]["seq_len"] == 2048
        assert (t["lr"], t["epochs"], t["global_batch_size"], t["schedule"], t["weight_decay"],
                t["warmup_ratio"], t["betas"], t["min_lr_ratio"]) == (
            1e-5, 5.0, 32, "cosine", 0.1, 0.0, [0.9, 0.999], 0.0)
        assert (t["save_every"], t["save_every_epoch"], t["keep_last"]) == (0, True, 5)
        assert c["data"]["packing"] == "release"
        assert c["deepspeed"]["zero_stage"] == 3 and c["model"]["gradient_checkpointing"]
    assert cfg["distill_boost"]["init_from_seed"] is False
    # influence: LESS warmup and features
    inf = cfg["influence"]
    w, ic = inf["trainer"], inf["influence"]
    assert (w["lr"], w["epochs"], w["global_batch_size"], w["schedule"], w["warmup_ratio"],
            w["weight_decay"], w["betas"]) == (2e-5, 4.0, 32, "linear", 0.03, 0.0, [0.9, 0.999])
    assert inf["data"]["seq_len"] == 2048 and inf["data"]["packing"] == "none"
    assert (w["seed"], w["data_seed"], ic["warmup_sample_seed"]) == (0, 3, 42)  # LESS seeds
    assert ic["lora"] == {"r": 128, "alpha": 512, "dropout": 0.1,
                          "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    assert (ic["proj_dim"], ic["max_len"], ic["warmup_fraction"], ic["top_p"]) == (
        8192, 2048, 0.05, 0.1)
    assert [t.split("/")[-2] for t in ic["targets"]] == ["gsm8k", "math_train"]
    assert inf["pool"] == 13000 and inf["model"]["name"] == "deepseekmath-7b"
    # synthesis: vLLM bf16, CoT 1.0 / top_p 1.0 / 2,500; tool 0.1 / 0.95 / 5,000
    for syn in (cfg["synthesize"]["synth"], inf["synth"]):
        assert (syn["backend"], syn["precision"], syn["temperature"], syn["top_p"],
                syn["max_new_tokens"], syn["tool_temperature"], syn["tool_top_p"],
                syn["tool_max_new_tokens"]) == ("vllm", "bf16", 1.0, 1.0, 2500, 0.1, 0.95, 5000)
    # continued pretraining: sh/train/train.sh, one run ending with the SFT data
    p = cfg["pretrain"]
    t, d = p["trainer"], p["data"]
    assert p["model"]["name"] == PRETRAIN_MODEL[exp]
    assert (t["lr"], t["global_batch_size"], t["epochs"], t["weight_decay"], t["betas"],
            t["grad_clip"], t["schedule"], t["warmup_ratio"], t["min_lr_ratio"],
            t["decay_clip"]) == (1e-5, 512, 1.0, 0.0, [0.9, 0.999], 1.0, "wsd", 0.03, 0.1, True)
    assert t["warmup_ratio"] + t["stable_ratio"] == pytest.approx(0.85)
    assert (t["save_every"], t["keep_last"]) == (500, 0)  # --save_steps 500, all kept
    assert p["model"]["output_router_logits"] is True
    assert d["seq_len"] == 2048 and d["natural_mix"] and d["packing"] == "release"
    assert [s["name"] for s in d["tail_sources"]] == ["sft"] and d["tail_shuffle"] is True
    assert d["sources"] == []  # filled from the filter stage (synth_cot, synth_tool)
    assert plan["pretrain"]["inputs"] == ["filter", "pack"] and cfg["pack"] == d
    assert p["deepspeed"]["zero_stage"] == 3
    assert p["deepspeed"]["offload_optimizer"] == (exp == "jz3_8x7b")
    # evaluation: the release's benchmarks, shots and settings (jz3/benchmarks registry)
    e = cfg["evaluate"]["eval"]
    assert set(e["benchmarks"]) == {"gsm8k", "math-oai", "svamp", "asdiv", "mawps", "carp_en",
                                    "tabmwp", "minerva_math", "aqua", "sat_math", "mmlu_stem",
                                    "gsm-hard"}
    assert (e["shots"], e["temperature"], e["max_new_tokens"], e["tool_rounds"], e["settings"],
            e["backend"], e["top_p"], e["seed"]) == (
        "release", 0.0, 1024, 4, ["cot", "tool"], "vllm", 1.0, 0)
    assert (e["shot_counts"], e["cot_exec_calls"]) == ({"aqua": 4}, 4)  # eval/examples.py, math_eval.py


def test_sft_stage_stays_available(tmp_path):
    """Other experiments keep a separate sft stage; turning it on in jz3_* moves evaluate back."""
    plan = _plan(compose(["+exp=jz3_7b", "stages.sft.enabled=true", f"run_dir={tmp_path}"]))
    assert plan["sft"]["inputs"] == ["pretrain"] and plan["evaluate"]["inputs"] == ["sft"]
    assert plan["sft"]["config"]["model"]["name"] == "mistral-7b"
    tiny = _plan(compose(["+exp=tiny_pipeline", f"run_dir={tmp_path}"]))
    assert "sft" in tiny and tiny["evaluate"]["inputs"] == ["sft"]


def test_paper_scale_run_without_checkpoints_stops_before_any_stage(project_root, tmp_path):
    """A forgotten `model.path` would pretrain Mistral-7B from random weights: refused up front,
    naming every key; tiny models and `from_scratch` are allowed."""
    from jz3.config.model import ModelConfig
    from jz3.models.build import check_weights_source
    from jz3.models.flops import total_params

    mistral = compose(["+exp=jz3_7b"]).stages.pretrain.model
    assert 7.2e9 < total_params(mistral) < 7.3e9  # Mistral-7B-v0.1: 7.24B
    with pytest.raises(ValueError, match=r"stages.pretrain.model.path is null: mistral-7b \(7.2B"):
        check_weights_source(mistral, key="stages.pretrain.model")
    check_weights_source(mistral, path="/models/mistral")  # trainer.init_from
    check_weights_source(ModelConfig(arch=Arch.mistral, **{
        k: getattr(mistral, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "vocab_size")},
        from_scratch=True))
    check_weights_source(ModelConfig())  # tiny

    run_dir = tmp_path / "run"
    cp = subprocess.run([sys.executable, "launch/pipeline.py", "+exp=jz3_7b", f"run_dir={run_dir}",
                         "stages.snippets.snippets.corpus=[x.jsonl]"], cwd=project_root,
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode != 0
    for key in ("stages.distill.model", "stages.distill_boost.model", "stages.pretrain.model"):
        assert f"{key}.path is null" in cp.stderr, (key, cp.stderr[-3000:])
    assert not (run_dir / "snippets").exists()  # nothing ran
