"""`python -m jz3.preflight` on a machine without a GPU: says what it skipped and exits 0; the
projection kernel check runs on the CPU under TRITON_INTERPRET=1; a mismatch exits 1."""

import json
import os
import subprocess
import sys

import pytest

from jz3 import preflight


def _run(env_extra, *args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "jz3.preflight", *args], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.skipif(preflight._gpu(), reason="this machine has a GPU")
def test_without_a_gpu_every_check_is_skipped_with_its_reason():
    p = _run({})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["gpu"] is False and summary["failed"] == []
    assert summary["skipped"] == ["projection", "flash_attn", "vllm", "zero3_step"]
    for name in summary["skipped"]:
        row = next(x for x in lines if x.startswith(name))
        assert "SKIP" in row and "no CUDA GPU" in row
    assert any(x.startswith("skipped: projection, flash_attn, vllm, zero3_step") for x in lines)


@pytest.mark.skipif(preflight._gpu(), reason="this machine has a GPU")
def test_projection_kernel_runs_on_cpu_under_triton_interpret():
    p = _run({"TRITON_INTERPRET": "1"}, "--only", "projection")
    assert p.returncode == 0, p.stderr
    check = json.loads(p.stdout.strip().splitlines()[-1])["checks"][0]
    assert check["status"] == "PASS" and check["metrics"]["max_rel_err"] < 1e-4


def test_a_kernel_mismatch_fails_and_exits_nonzero(monkeypatch, capsys):
    proj = preflight._projection_module()
    real = proj.project_torch
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(proj, "HAVE_TRITON", True)
    monkeypatch.setattr(proj, "project_triton", lambda x, d, **kw: real(x, d, **kw) * 1.01)
    assert preflight.main(["--only", "projection"]) == 1
    out = capsys.readouterr().out
    assert "projection  FAIL" in out and json.loads(out.strip().splitlines()[-1])["failed"] == [
        "projection"]


def test_the_vllm_check_tiny_model_is_a_loadable_hf_folder(tmp_path):
    """The folder the vLLM check hands to vLLM (built offline) loads and generates with HF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = preflight._tiny_hf_model(tmp_path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = tok("Solve 3x + 5 = 20", return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == "Solve 3x + 5 = 20"  # byte-level BPE round trip
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4
