"""GPU preflight: run on one node before a long job (`python -m jz3.preflight`).

Checks, each against a reference, and prints one table row per check:
  projection   the Triton projection kernel vs its torch reference (max relative error), and
               its speed (GB/s of input read, TFLOP/s)
  flash_attn   flash-attn varlen on packed documents vs SDPA run document by document (bf16)
  vllm         a vLLM greedy generation with a tiny random Llama (written to a temp folder, no
               download): every token vLLM picks must be an argmax of the HF model's logits
  zero3_step   bf16 DeepSpeed ZeRO-3 optimizer steps of a ~1B Llama: tokens/s and MFU
Status: PASS, FAIL (a mismatch: exit code 1), SKIP (no GPU, or the library is not installed;
the reason is printed; `--strict` makes a missing library a failure). Without a GPU everything
is skipped and the exit code is 0, except the projection kernel under `TRITON_INTERPRET=1`,
which then runs on the CPU at a small size. The last line printed is a JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional


class Status(str, Enum):
    passed = "PASS"
    failed = "FAIL"
    skipped = "SKIP"


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    metrics: Dict[str, float] = field(default_factory=dict)


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], reps: int) -> float:
    """Seconds per call (one untimed warm-up call)."""
    fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync()
    return (time.perf_counter() - t0) / reps


def _projection_module():
    try:
        from jz3.kernels import projection
    except ImportError:
        from kernels import projection
    return projection


def check_projection(small: bool = False) -> Check:
    """Triton kernel vs torch reference on the same Philox matrix; speed of the kernel."""
    import torch

    proj = _projection_module()
    interp = os.environ.get("TRITON_INTERPRET") == "1"
    if not _gpu() and not interp:
        return Check("projection", Status.skipped, "no CUDA GPU (set TRITON_INTERPRET=1 to run "
                     "the kernel on the CPU at a small size)")
    if not proj.HAVE_TRITON:
        return Check("projection", Status.skipped, "triton is not installed")
    dev = "cuda" if _gpu() else "cpu"
    n, k, d = (4, 256, 64) if small or dev == "cpu" else (32, 1 << 16, 8192)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(n, k, device=dev, generator=g)
    got = proj.project_triton(x, d, seed=7, key=3, row_offset=1 << 33)
    ref = proj.project_torch(x, d, seed=7, key=3, row_offset=1 << 33)
    err = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
    metrics: Dict[str, float] = {"max_rel_err": err, "n": n, "k": k, "dim": d}
    if dev == "cuda":
        big = torch.randn(32, 1 << 18, device=dev, generator=g)
        s = _timed(lambda: proj.project_triton(big, 8192, seed=7), reps=3)
        metrics.update(seconds=s, input_gb_s=big.numel() * 4 / s / 1e9,
                       tflops=2 * big.numel() * 8192 / s / 1e12)
    ok = err < 1e-4
    detail = f"max rel err {err:.1e} ({n}x{k} -> {d}, {dev})"
    if "input_gb_s" in metrics:
        detail += f"; 32x2^18 -> 8192: {metrics['seconds'] * 1e3:.1f} ms, " \
                  f"{metrics['input_gb_s']:.1f} GB/s in, {metrics['tflops']:.1f} TFLOP/s"
    return Check("projection", Status.passed if ok else Status.failed, detail, metrics)


def check_flash_attn(strict: bool) -> Check:
    """flash_attn_varlen_func on 3 packed documents vs SDPA on each document (fp32 reference)."""
    if not _gpu():
        return Check("flash_attn", Status.skipped, "no CUDA GPU")
    if importlib.util.find_spec("flash_attn") is None:
        return Check("flash_attn", Status.failed if strict else Status.skipped,
                     "flash-attn is not installed (training falls back to SDPA)")
    import torch
    import torch.nn.functional as F
    from flash_attn import flash_attn_varlen_func

    lens, h, hd = [300, 700, 1048], 16, 128
    total = sum(lens)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(total, h, hd, device="cuda", generator=g, dtype=torch.bfloat16)
               for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    out = flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens), causal=True)
    ref = torch.cat([F.scaled_dot_product_attention(
        *(t[a:b].float().transpose(0, 1)[None] for t in (q, k, v)), is_causal=True)[0].transpose(0, 1)
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)])
    err = float((out.float() - ref).abs().max())
    s_flash = _timed(lambda: flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens),
                                                    causal=True), reps=10)
    ok = err < 2e-2
    return Check("flash_attn", Status.passed if ok else Status.failed,
                 f"max abs err {err:.1e} vs SDPA per document (bf16, docs {lens}); "
                 f"{s_flash * 1e3:.2f} ms per call", {"max_abs_err": err, "seconds": s_flash})


def _tiny_hf_model(folder: Path) -> Path:
    """A random 2-layer Llama + a byte-level BPE tokenizer trained on a few sentences."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["A ball is dropped from a height of 20 metres.", "The sum of the first n odd "
            "numbers is n squared.", "Solve 3x + 5 = 20 for x.", "## Question\n## Solution\n"]
    tok.train_from_iterator(text * 50, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=352,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, bos_token_id=fast.bos_token_id,
                      eos_token_id=fast.eos_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def check_vllm(strict: bool) -> Check:
    if not _gpu():
        return Check("vllm", Status.skipped, "no CUDA GPU")
    if importlib.util.find_spec("vllm") is None:
        return Check("vllm", Status.failed if strict else Status.skipped,
                     "vllm is not installed (synthesis and evaluation fall back to HF generate)")
    import torch
    from transformers import AutoModelForCausalLM
    from vllm import LLM, SamplingParams

    with tempfile.TemporaryDirectory(prefix="jz3-preflight-") as d:
        path = str(_tiny_hf_model(Path(d)))
        llm, dtype, err = None, None, None
        for dtype in ("float32", "bfloat16"):  # fp32 compares exactly; some vLLM builds lack it
            try:
                llm = LLM(model=path, dtype=dtype, enforce_eager=True, seed=0,
                          gpu_memory_utilization=0.2, max_model_len=512)
                break
            except Exception as e:  # noqa: BLE001 - try the next dtype, report the last error
                err = e
        if llm is None:
            raise RuntimeError(f"vLLM could not load a tiny Llama: {err}")
        tol = 1e-3 if dtype == "float32" else 0.1
        prompts = ["A ball is dropped", "Solve 3x", "## Question\n", "The sum of"]
        sp = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
        outs = llm.generate(prompts, sp)
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).cuda().eval()
        worst = 0.0
        for o in outs:
            ids = list(o.prompt_token_ids) + list(o.outputs[0].token_ids)
            with torch.no_grad():
                logits = hf(torch.tensor([ids], device="cuda")).logits[0].float()
            p = len(o.prompt_token_ids)
            for t, tid in enumerate(o.outputs[0].token_ids):
                row = logits[p - 1 + t]
                worst = max(worst, float(row.max() - row[tid]))
        many = [f"{prompts[i % 4]} {i}" for i in range(256)]
        t0 = time.perf_counter()
        res = llm.generate(many, SamplingParams(temperature=1.0, max_tokens=128, ignore_eos=True))
        dt = time.perf_counter() - t0
        toks = sum(len(r.outputs[0].token_ids) for r in res)
        del llm
    ok = worst < tol
    return Check("vllm", Status.passed if ok else Status.failed,
                 f"greedy tokens are HF argmaxes ({dtype}: worst logit gap {worst:.1e}, "
                 f"tolerance {tol:g}); "
                 f"{toks / dt:.0f} generated tokens/s on 256 prompts",
                 {"worst_logit_gap": worst, "tokens_per_s": toks / dt})


def check_zero3_step(steps: int = 3, micro_batch: int = 4, seq_len: int = 2048) -> Check:
    """bf16 ZeRO-3 steps of a ~1.1B Llama (TinyLlama shape) on random tokens; tokens/s, MFU."""
    if not _gpu():
        return Check("zero3_step", Status.skipped, "no CUDA GPU")
    import deepspeed
    import torch

    from jz3.config.deepspeed import DeepSpeedConfig
    from jz3.config.enums import Precision
    from jz3.config.model import ModelConfig
    from jz3.config.trainer import TrainerConfig
    from jz3.models import build_model, flops_per_token
    from jz3.parallel.dist import init_distributed
    from jz3.parallel.ds_config import build_ds_config
    from jz3.train.entry import GPU_PEAK_TFLOPS

    info = init_distributed(True)
    mc = ModelConfig(name="preflight-1b", vocab_size=32000, hidden_size=2048,
                     intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                     num_key_value_heads=4, max_position_embeddings=seq_len,
                     gradient_checkpointing=True, from_scratch=True)
    tc = TrainerConfig(precision=Precision.bf16, micro_batch_size=micro_batch,
                       global_batch_size=micro_batch * info.world_size)
    dsc = build_ds_config(DeepSpeedConfig(enabled=True, zero_stage=3), tc, info.world_size,
                          mc.hidden_size)
    model = build_model(mc, torch.bfloat16, dsc)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=dsc)
    g = torch.Generator(device="cuda").manual_seed(0)
    losses: List[float] = []

    def step() -> None:
        ids = torch.randint(0, mc.vocab_size, (micro_batch, seq_len), device="cuda", generator=g)
        loss = engine(input_ids=ids, labels=ids, use_cache=False).loss
        engine.backward(loss)
        engine.step()
        losses.append(float(loss))

    s = _timed(step, reps=steps)
    tokens_s = micro_batch * seq_len * info.world_size / s
    name = torch.cuda.get_device_name()
    peak = next((tf for key, tf in GPU_PEAK_TFLOPS.items() if key in name), None)
    mfu = flops_per_token(mc, seq_len) * tokens_s / (peak * 1e12 * info.world_size) if peak else None
    finite = all(map(lambda v: v == v and abs(v) < 1e4, losses))
    detail = f"{s:.2f} s/step, {tokens_s:,.0f} tokens/s" + (
        f", MFU {mfu:.1%} of {peak:.0f} TFLOPS ({name})" if mfu is not None else f" ({name}: peak unknown)")
    if not finite:
        detail += f"; non-finite loss {losses}"
    return Check("zero3_step", Status.passed if finite else Status.failed, detail,
                 {"seconds_per_step": s, "tokens_per_s": tokens_s, **({"mfu": mfu} if mfu else {})})


CHECKS = ("projection", "flash_attn", "vllm", "zero3_step")


def run(only: Optional[List[str]] = None, strict: bool = False) -> List[Check]:
    fns: Dict[str, Callable[[], Check]] = {
        "projection": check_projection, "flash_attn": lambda: check_flash_attn(strict),
        "vllm": lambda: check_vllm(strict), "zero3_step": check_zero3_step}
    out = []
    for name in only or CHECKS:
        t0 = time.perf_counter()
        try:
            c = fns[name]()
        except Exception as e:  # a crash is a failed check, reported with its error
            c = Check(name, Status.failed, f"{type(e).__name__}: {e}")
        c.metrics.setdefault("wall_s", time.perf_counter() - t0)
        out.append(c)
        print(f"[preflight] {c.name}: {c.status.value} {c.detail}", file=sys.stderr, flush=True)
    return out


def table(checks: List[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(w)}  status  detail", f"{'-' * w}  ------  ------"]
    lines += [f"{c.name.ljust(w)}  {c.status.value.ljust(6)}  {c.detail}" for c in checks]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jz3.preflight", description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=CHECKS, help="run only these checks")
    ap.add_argument("--strict", action="store_true", help="a missing flash-attn/vllm is a failure")
    args = ap.parse_args(argv)
    checks = run(args.only, args.strict)
    print(table(checks))
    skipped = [c.name for c in checks if c.status == Status.skipped]
    if skipped:
        print(f"skipped: {', '.join(skipped)} (see the detail column)")
    failed = [c.name for c in checks if c.status == Status.failed]
    print(json.dumps({"gpu": _gpu(), "failed": failed, "skipped": skipped,
                      "checks": [dict(asdict(c), status=c.status.value) for c in checks]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
