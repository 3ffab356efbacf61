"""Enumerations used by the typed configs (no magic strings)."""

from __future__ import annotations

from enum import Enum


class Arch(str, Enum):
    llama = "llama"
    mistral = "mistral"
    mixtral = "mixtral"


class AttnImpl(str, Enum):
    auto = "auto"  # flash-attn varlen when installed on GPU, else SDPA with a document mask
    flash = "flash"
    sdpa = "sdpa"
    eager = "eager"


class Precision(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class Schedule(str, Enum):
    wsd = "wsd"  # warmup-stable-decay
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


class TrainMode(str, Enum):
    pretrain = "pretrain"
    sft = "sft"
    distill = "distill"


class OnError(str, Enum):
    raise_ = "raise"
    quarantine = "quarantine"


class TokenizerKind(str, Enum):
    sentencepiece = "sentencepiece"  # train (tiny runs) or load a tokenizer.model
    hf = "hf"  # a local HF tokenizer folder


class TeacherKind(str, Enum):
    offline = "offline"
    openai = "openai"


class GenBackend(str, Enum):
    hf = "hf"
    vllm = "vllm"
    openai = "openai"


class ProjKind(str, Enum):
    rademacher = "rademacher"
    gaussian = "gaussian"


class LauncherKind(str, Enum):
    local = "local"
    slurm = "slurm"


class WandbMode(str, Enum):
    online = "online"
    offline = "offline"
    disabled = "disabled"
