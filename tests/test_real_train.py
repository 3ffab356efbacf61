"""Training the real checkpoint (SmolLM2-135M-Instruct, `make models`) under DeepSpeed ZeRO-3 on 2
gloo CPU ranks: a full fine-tune and a LoRA fine-tune, each killed with SIGKILL after a
checkpoint and resumed (the resumed steps repeat the lost ones exactly); the full run's gathered
HF export loads with the engine's logits and the tokenizer's chat template.

The child side of this file runs `jz3.train.entry.run_training` on a `TrainJob` given as JSON:
    deepspeed --num_gpus 2 tests/test_real_train.py --job job.json [--kill-at K] [--lora]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dist_harness import (  # noqa: E402
    DumpLogits,
    SignalAt,
    launch_ranks,
    metric_lines,
    metrics_by_step,
    probe_batch,
)

STEPS, SAVE_EVERY, KILL_AT = 4, 2, 3
LORA = dict(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])


def job_dict(smol_dir: Path, data_file: Path, out: Path, lr: float, export: bool) -> Dict[str, Any]:
    """A TrainJob as plain data: the `smollm2_135m` preset, its own tokenizer, ZeRO-3, fp32."""
    from omegaconf import OmegaConf

    from jz3.config.compose import register
    from jz3.paths import CONFIG_DIR

    register()
    model = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / "smollm2_135m.yaml"),
                                   resolve=True)
    assert Path(model["path"]) == smol_dir
    return {
        "seed": 0,
        "model": model,
        "data": {"sources": [{"name": "jz3", "path": str(data_file)}],
                 "tokenizer": {"kind": "hf", "path": str(smol_dir), "save_dir": str(out / "tok")},
                 "seq_len": 64, "packed_dir": str(out / "packed"), "num_workers": 0},
        "trainer": {"mode": "pretrain", "output_dir": str(out / "train"), "lr": lr,
                    "schedule": "constant", "warmup_ratio": 0.0, "max_steps": STEPS,
                    "global_batch_size": 4, "micro_batch_size": 1, "precision": "fp32",
                    "seed": 0, "log_every": 1, "save_every": SAVE_EVERY, "keep_last": 2,
                    "export_hf": export, "wandb": {"dir": str(out)}},
        "deepspeed": {"enabled": True, "zero_stage": 3},
    }


def launch(job: Dict[str, Any], out: Path, flags: List[str]) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    (out / "job.json").write_text(json.dumps(job))
    return launch_ranks(Path(__file__), ["--job", str(out / "job.json"), *flags], 2, timeout=1200)


def kill_and_resume(job: Dict[str, Any], out: Path, flags: List[str]) -> Dict[str, Any]:
    killed = launch(job, out, [*flags, "--kill-at", str(KILL_AT)])
    assert killed.returncode != 0, killed.stdout[-2000:]
    before = {r["step"]: r for r in metric_lines(out / "train" / "metrics.jsonl")}
    assert max(before) == KILL_AT, (killed.returncode, killed.stdout[-3000:],
                                    killed.stderr[-8000:])
    done = launch(job, out, [*flags, "--logits-out", str(out / "logits.pt")])
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    res = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    return {"before": before, "after": metrics_by_step(out / "train" / "metrics.jsonl"),
            "result": res, "out": out}


@pytest.fixture(scope="module")
def smol_dir() -> Path:
    from jz3.models.gguf_import import SMOLLM2_DIR, is_imported

    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    return SMOLLM2_DIR


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, shared_data) -> Path:
    """12 released JiuZhang3.0 records ({"input","output"}: loss on the solutions)."""
    f = tmp_path_factory.mktemp("data") / "train.jsonl"
    lines = (shared_data / "jiuzhang3_samples" / "cot_pretrain_sampled.jsonl").open().readlines()
    f.write_text("".join(lines[:12]))
    return f


def check_resume(run: Dict[str, Any]) -> None:
    before, after = run["before"], run["after"]
    assert sorted(after) == list(range(1, STEPS + 1))
    for s in range(SAVE_EVERY + 1, KILL_AT + 1):  # steps lost with the kill, recomputed
        assert after[s]["batch_hash"] == before[s]["batch_hash"], s
        assert after[s]["loss"] == pytest.approx(before[s]["loss"], rel=1e-12, abs=0), s
    ck = run["out"] / "train" / "checkpoints" / f"step-{SAVE_EVERY:08d}"
    assert len(list(ck.glob("*optim_states.pt"))) == 2  # one ZeRO-3 partition per rank
    # real pretrained weights (not a random init): math text is far below ln(49152) = 10.8
    assert all(0.1 < after[s]["loss"] < 4.0 for s in after), [after[s]["loss"] for s in after]


@pytest.mark.slow
def test_full_finetune_zero3_resume_and_hf_export(smol_dir, data_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jz3.models.attention import document_forward_kwargs

    run = kill_and_resume(job_dict(smol_dir, data_file, tmp_path, 1e-4, True), tmp_path, [])
    check_resume(run)
    hf = Path(run["result"]["hf_export_dir"])
    tok = AutoTokenizer.from_pretrained(str(hf), local_files_only=True)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(str(hf), local_files_only=True).eval()
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    b = probe_batch()
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"],
                       **document_forward_kwargs(b["position_ids"], "sdpa")).logits
        base = AutoModelForCausalLM.from_pretrained(str(smol_dir), local_files_only=True)(
            input_ids=b["input_ids"], **document_forward_kwargs(b["position_ids"], "sdpa")).logits
    engine = torch.load(tmp_path / "logits.pt")
    torch.testing.assert_close(logits.float(), engine, rtol=0, atol=1e-4)
    assert (logits - base).abs().max() > 1e-3  # the export holds the trained weights


@pytest.mark.slow
def test_lora_zero3_resume(smol_dir, data_file, tmp_path):
    run = kill_and_resume(job_dict(smol_dir, data_file, tmp_path, 1e-3, False), tmp_path,
                          ["--lora"])
    check_resume(run)
    assert run["result"]["hf_export_dir"] is None
    assert run["after"][STEPS]["loss"] != run["after"][1]["loss"]  # the adapters learn


# ---------------------------------------------------------------- child entry
def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True)
    ap.add_argument("--kill-at", type=int)
    ap.add_argument("--logits-out")
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--local_rank", "--local-rank", type=int)
    args = ap.parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    from omegaconf import OmegaConf

    from jz3.config.stages import TrainJob
    from jz3.train.entry import run_training

    job = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainJob),
                                              json.loads(Path(args.job).read_text())))
    cbs: List[Any] = []
    if args.kill_at:
        cbs.append(SignalAt(args.kill_at, signal.SIGKILL))
    if args.logits_out:
        cbs.append(DumpLogits(args.logits_out))
    transform = None
    if args.lora:
        from jz3.config.influence import LoraConfig
        from jz3.influence.lora import apply_lora

        def transform(model):
            return apply_lora(model, LoraConfig(**LORA))
    res = run_training(job, callbacks=cbs, model_transform=transform)
    print("RESULT " + json.dumps(res.__dict__))


if __name__ == "__main__":
    main()
