"""Both trainer engines implement the `Engine` protocol the trainer is typed against."""

from __future__ import annotations

import inspect

import torch

from jz3.config.trainer import TrainerConfig
from jz3.train.engine import DeepSpeedEngine, Engine, EngineKind, TorchEngine

METHODS = ("forward", "backward", "micro_step", "save", "load", "full_state_dict")


def test_torch_engine_is_an_engine_and_steps(tmp_path):
    model = torch.nn.Linear(4, 2)
    eng = TorchEngine(model, TrainerConfig(), total_steps=4, device=torch.device("cpu"),
                      autocast_dtype=None)
    assert isinstance(eng, Engine) and eng.kind == EngineKind.torch
    before = model.weight.detach().clone()
    loss = eng.forward(input=torch.ones(3, 4)).pow(2).sum()
    eng.backward(loss)
    eng.micro_step(last=True)
    assert eng.grad_norm > 0 and not torch.equal(before, model.weight)
    eng.save(tmp_path)
    eng.load(tmp_path)
    assert set(eng.full_state_dict()) == {"weight", "bias"}


def test_deepspeed_engine_has_the_protocol_signatures():
    for name in METHODS:
        want = inspect.signature(getattr(Engine, name))
        got = inspect.signature(getattr(DeepSpeedEngine, name))
        assert list(got.parameters) == list(want.parameters), name
    assert isinstance(DeepSpeedEngine.lr, property) and DeepSpeedEngine.kind == EngineKind.deepspeed
    src = inspect.getsource(DeepSpeedEngine.__init__)
    for attr in ("module", "optimizer", "device", "grad_norm", "data_parallel_rank",
                 "data_parallel_world", "loss_scale_for_backward"):
        assert f"self.{attr}" in src, attr
