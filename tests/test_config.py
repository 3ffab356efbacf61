"""Config composition: presets compose, misspelt keys and wrong types are errors naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jz3.config import compose
from jz3.config.enums import Arch, Schedule


@pytest.mark.parametrize("exp,arch,layers", [
    ("jz3_7b", Arch.mistral, 32), ("jz3_8b", Arch.llama, 32), ("jz3_8x7b", Arch.mixtral, 32),
    ("synth_distill", Arch.llama, 30), ("tiny_pretrain", Arch.llama, 2),
])
def test_presets_compose(exp, arch, layers):
    cfg = compose([f"+exp={exp}"])
    assert cfg.model.arch == arch and cfg.model.num_hidden_layers == layers
    assert cfg.exp_name == exp and cfg.run_dir == f"runs/{exp}"


def test_real_model_numbers():
    m = compose(["+exp=jz3_8b"]).model
    assert (m.vocab_size, m.hidden_size, m.intermediate_size, m.num_key_value_heads) == (
        128256, 4096, 14336, 8)
    assert m.rope_theta == 500000.0
    mx = compose(["+exp=jz3_8x7b"]).model
    assert mx.num_local_experts == 8 and mx.num_experts_per_tok == 2
    assert compose(["+exp=jz3_7b"]).trainer.schedule == Schedule.wsd


def test_misspelt_key_names_it():
    with pytest.raises(Exception, match="lrr"):
        compose(["trainer.lrr=1"])
    with pytest.raises(Exception, match="lrr"):
        compose(["+trainer.lrr=1"])


def test_wrong_type_names_key():
    with pytest.raises(Exception, match="max_steps"):
        compose(["trainer.max_steps=abc"])
    with pytest.raises(Exception, match="schedule"):
        compose(["trainer.schedule=cosinee"])


def test_print_config_from_launcher(project_root):
    out = subprocess.run([sys.executable, "launch/pretrain.py", "--cfg", "job", "+exp=jz3_7b"],
                         cwd=project_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mistral-7b" in out.stdout and "hidden_size: 4096" in out.stdout
