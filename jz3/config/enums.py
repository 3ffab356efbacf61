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


class Packing(str, Enum):
    """How tokenized documents become fixed-length training rows (`data.packing`)."""

    # whole documents, each cut to seq_len tokens + its EOS, greedily packed in order into
    # padded rows of seq_len + 1 tokens; no document crosses a row (the release's train_pack.py)
    release = "release"
    concat = "concat"  # documents concatenated and cut every seq_len tokens (raw text streams)
    none = "none"  # one document per row, right-truncated to seq_len and padded (LESS warmup)


class SnippetRule(str, Enum):
    """How corpus documents become snippets (`snippets.rule`)."""

    paragraphs = "paragraphs"  # ~size-character pieces cut at paragraph / sentence boundaries
    release = "release"  # the release's per-source builders (synthesis_cot/build_math_*_prompts.py)


class CorpusKind(str, Enum):
    """Which of the release's corpus builders a corpus source follows (`snippets.kinds`)."""

    textbook = "textbook"  # one snippet per `## ` section, fenced in the prompt (MathPile textbooks)
    arxiv = "arxiv"  # one snippet per `\section{}` part (AutoMathText arXiv)
    web = "web"  # the head of the document (AutoMathText web)
    wiki = "wiki"  # the head of the document, rendered at every CoT level (MathPile wiki)
    stack = "stack"  # question head + answer head (MMIQC StackExchange)


class OnError(str, Enum):
    raise_ = "raise"
    quarantine = "quarantine"


class TokenizerKind(str, Enum):
    sentencepiece = "sentencepiece"  # train (tiny runs) or load a tokenizer.model
    hf = "hf"  # a local HF tokenizer folder


class TeacherKind(str, Enum):
    offline = "offline"
    openai = "openai"


class PromptType(str, Enum):
    """The JiuZhang3.0 education-stage prompts (eight chain-of-thought stages + tool)."""

    grade_school = "grade_school"
    middle_school = "middle_school"
    high_school = "high_school"
    college = "college"
    amc8 = "amc8"
    amc10 = "amc10"
    amc12 = "amc12"
    aime = "aime"
    tool = "tool"


class JournalSync(str, Enum):
    """SQLite `synchronous` for the teacher journal: normal survives kill -9, full power loss."""

    normal = "normal"
    full = "full"


class ReconcilePolicy(str, Enum):
    """How a rerun books teacher attempts that were in flight when a previous run died."""

    strict = "strict"  # keep their worst case forever
    estimate = "estimate"  # book an estimate; release it when the key is answered (idempotent)


class IdempotencyMode(str, Enum):
    """Whether the teacher endpoint honours `Idempotency-Key` (one bill per key)."""

    probe = "probe"  # send one tiny request twice under one key at start-up and compare
    trust = "trust"  # the user says it does
    none = "none"  # send no key; assume every attempt that may have been billed was


class GenBackend(str, Enum):
    hf = "hf"
    vllm = "vllm"
    openai = "openai"


class ProjKind(str, Enum):
    rademacher = "rademacher"
    gaussian = "gaussian"


class ProjStructure(str, Enum):
    block = "block"  # per-layer dense projection of the (preconditioned) gradient
    kronecker = "kronecker"  # per-layer two-sided R_out^T G R_in (LoGra-style factored)


class InfluenceStep(str, Enum):
    all = "all"  # warmup + extract + score in one process
    warmup = "warmup"  # LoRA warmup only (before a SLURM array of extract tasks)
    extract = "extract"  # candidate features of one shard (shard/num_shards or SLURM env)
    score = "score"  # target features, merge shards (reports missing ones), score, select


class LauncherKind(str, Enum):
    local = "local"
    slurm = "slurm"


class WandbMode(str, Enum):
    online = "online"
    offline = "offline"
    disabled = "disabled"


class EvalSetting(str, Enum):
    cot = "cot"  # chain of thought: `## Solution`
    tool = "tool"  # Python in the sandbox: `## Code Solution`
