"""Influence feature throughput vs the LESS recipe: `python -m jz3.bench.influence`.

Same tiny Llama + LoRA, same warmup checkpoint (a few real AdamW steps on the candidates), same
candidates (JiuZhang3.0 synthesized problems), targets (GSM8K train slice) and D:
- LESS recipe (baseline): one example at a time (batch size 1), `loss.backward()`, flatten all
  LoRA gradients, Adam-precondition the candidates, project with a stored dense Rademacher
  matrix `[P, D]` (generated once, not timed: a generous CPU stand-in for TRAK's projector).
- ours: batched per-example gradients from hooks (batch 16), Adam-preconditioned candidates,
  per-layer (block) projection with dims shared by gradient energy (`--structure kronecker`:
  two-sided per-layer projection, LoGra-style factored for the targets).
`topk_overlap`: overlap of our top-10% candidates with the top-10% under exact (unprojected)
Adam features vs exact target gradients. Prints a JSON object last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from typing import Dict, List, Tuple

import numpy as np
import torch

from jz3.config.enums import ProjKind, ProjStructure
from jz3.config.influence import LoraConfig
from jz3.config.model import ModelConfig
from jz3.influence.examples import Encoder, Example, load_examples, per_example_loss
from jz3.influence.features import FeatureExtractor
from jz3.influence.lora import apply_lora, lora_linears
from jz3.influence.precondition import AdamMoments, adam_feature
from jz3.influence.score import less_scores_dense, select
from jz3.paths import shared_data_dir


def build(args: argparse.Namespace) -> Tuple[torch.nn.Module, Encoder]:
    from transformers import AutoTokenizer

    from jz3.data.tokenizers import train_sentencepiece
    from jz3.models import build_model

    tok_dir = os.path.join(args.work_dir, "tokenizer")
    s = shared_data_dir() / "jiuzhang3_samples"
    if not os.path.exists(os.path.join(tok_dir, "tokenizer_config.json")):
        train_sentencepiece([str(s / "cot_pretrain_sampled.jsonl"),
                             str(s / "finetune_sampled.jsonl")], tok_dir, vocab_size=2048)
    tok = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=args.hidden, intermediate_size=args.hidden * 2,
                                    num_hidden_layers=args.layers, num_attention_heads=4,
                                    num_key_value_heads=2))
    model = apply_lora(model, LoraConfig(r=args.rank, alpha=2 * args.rank, dropout=0.0),
                       dropout=0.0)
    return model, Encoder(tok, args.max_len)


def warmup(model: torch.nn.Module, enc: Encoder, exs: List[Example], steps: int) -> AdamMoments:
    """A few AdamW steps on the candidates: real LoRA weights and moments to featurise with."""
    mods = lora_linears(model)
    params = [m.weight for m in mods.values()]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()
    for s in range(steps):
        batch = enc.collate(exs[(s * 8) % len(exs):(s * 8) % len(exs) + 8])
        loss = per_example_loss(model(input_ids=batch.input_ids,
                                      attention_mask=batch.attention_mask).logits, batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return AdamMoments({n: opt.state[m.weight]["exp_avg"].clone() for n, m in mods.items()},
                       {n: opt.state[m.weight]["exp_avg_sq"].clone() for n, m in mods.items()})


def less_features(model: torch.nn.Module, enc: Encoder, exs: List[Example],
                  adam: AdamMoments | None, proj: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """LESS: batch size 1, flattened gradients, dense projection. Returns (projected, exact)."""
    mods = lora_linears(model)
    names = list(mods)
    params = [mods[n].weight for n in names]
    if adam is not None:
        m = torch.cat([adam.exp_avg[n].reshape(-1) for n in names])
        v = torch.cat([adam.exp_avg_sq[n].reshape(-1) for n in names])
    out, exact = [], []
    for ex in exs:
        b = enc.collate([ex])
        model.zero_grad(set_to_none=True)
        loss = per_example_loss(model(input_ids=b.input_ids, attention_mask=b.attention_mask)
                                .logits, b)[0]
        loss.backward()
        g = torch.cat([p.grad.reshape(-1) for p in params])
        if adam is not None:
            g = adam_feature(g, m, v, adam.beta1, adam.beta2, adam.eps)
        exact.append(g)
        out.append((g[None] @ proj)[0] / math.sqrt(proj.shape[1]))
    model.zero_grad(set_to_none=True)
    return torch.stack(out), torch.stack(exact)


HBM_GBPS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0, "A800": 2039.0, "H800": 3350.0}


def kernel_bench(args: argparse.Namespace) -> Dict[str, object]:
    """GPU only: the Triton kernel (matrix generated in-kernel) vs a dense torch matmul with a
    stored matrix, on `[batch, K]` gradient blocks; reports gradient bytes read per second."""
    from jz3.kernels.projection import project_triton

    if not torch.cuda.is_available():
        raise SystemExit("--kernel needs a CUDA device (the CPU path is the torch reference)")
    dev = torch.device("cuda")
    x = torch.randn(args.batch_size, args.kernel_k, device=dev, dtype=torch.bfloat16)
    dense = (torch.randint(0, 2, (args.kernel_k, args.dim), device=dev) * 2 - 1).to(torch.bfloat16)

    def timed(fn) -> float:
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.kernel_iters):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / args.kernel_iters

    t_tri = timed(lambda: project_triton(x, args.dim, seed=0, allow_tf32=True))
    t_mm = timed(lambda: x @ dense)
    gbytes = x.numel() * x.element_size() / 1e9
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in HBM_GBPS.items() if k in name), None)
    return {"device": name, "batch": args.batch_size, "k": args.kernel_k, "dim": args.dim,
            "triton_grad_gb_per_s": gbytes / t_tri, "dense_grad_gb_per_s": gbytes / t_mm,
            "triton_hbm_fraction": (gbytes / t_tri) / peak if peak else None,
            "triton_ms": t_tri * 1e3, "dense_ms": t_mm * 1e3,
            "dense_matrix_gb": dense.numel() * dense.element_size() / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=160)
    ap.add_argument("--targets", type=int, default=16)
    ap.add_argument("--dim", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rank", type=int, default=24)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--warmup-steps", type=int, default=8)
    ap.add_argument("--structure", default=ProjStructure.block.value,
                    choices=[x.value for x in ProjStructure])
    ap.add_argument("--work-dir", default=os.path.join("runs", "bench_influence"))
    ap.add_argument("--kernel", action="store_true", help="GPU kernel throughput instead")
    ap.add_argument("--kernel-k", type=int, default=1 << 24)
    ap.add_argument("--kernel-iters", type=int, default=5)
    args = ap.parse_args()
    if args.kernel:
        print(json.dumps(kernel_bench(args)))
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    data = shared_data_dir()
    cands = load_examples(data / "jiuzhang3_samples" / "cot_pretrain_sampled.jsonl",
                          limit=args.candidates)
    targs = load_examples(data / "gsm8k" / "train.jsonl", limit=args.targets)
    model, enc = build(args)
    adam = warmup(model, enc, cands, args.warmup_steps)
    n_params = sum(m.weight.numel() for m in lora_linears(model).values())

    gen = torch.Generator().manual_seed(0)
    dense = (torch.randint(0, 2, (n_params, args.dim), generator=gen) * 2 - 1).float()
    t0 = time.perf_counter()
    less_c, exact_c = less_features(model, enc, cands, adam, dense)
    less_t, exact_t = less_features(model, enc, targs, None, dense)
    less_s = time.perf_counter() - t0
    del dense

    ext = FeatureExtractor(model, enc, args.dim, seed=0, kind=ProjKind.rademacher, factored=True,
                           structure=ProjStructure(args.structure), energy_alloc=True)
    ext.use_checkpoint(adam)
    # generate (and cache) the CPU reference matrices first: the LESS matrix is not timed either
    ext.batch_features(cands[:1], adam)
    t0 = time.perf_counter()
    ours_c = torch.cat([ext.batch_features(cands[i:i + args.batch_size], adam)
                        for i in range(0, len(cands), args.batch_size)])
    ours_t = torch.cat([ext.batch_features(targs[i:i + args.batch_size], None)
                        for i in range(0, len(targs), args.batch_size)])
    ours_s = time.perf_counter() - t0
    ext.capture.remove()

    subtasks = ["gsm8k"] * len(targs)
    w = {"c": 1.0}

    def top(c: torch.Tensor, t: torch.Tensor) -> List[int]:
        sc = less_scores_dense({"c": c.numpy()}, {"c": t.numpy()}, subtasks, w)
        return select([str(i) for i in range(len(sc))], sc, top_p=0.1)

    exact_top = set(top(exact_c, exact_t))
    ours_top, less_top = set(top(ours_c, ours_t)), set(top(less_c, less_t))
    n = len(cands) + len(targs)
    res: Dict[str, object] = {
        "ours_examples_per_s": n / ours_s,
        "less_examples_per_s": n / less_s,
        "speedup": less_s / ours_s,
        "topk_overlap": len(ours_top & exact_top) / len(exact_top),
        "less_topk_overlap": len(less_top & exact_top) / len(exact_top),
        "structure": args.structure, "dim": args.dim, "lora_params": n_params, "candidates": len(cands),
        "targets": len(targs), "batch_size": args.batch_size, "max_len": args.max_len,
        "ours_s": ours_s, "less_s": less_s, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "loadavg_1m": os.getloadavg()[0],
    }
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
