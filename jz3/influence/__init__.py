"""LESS-style influence estimation (JiuZhang3.0 boosting step).

warmup.py     LoRA warmup through `jz3.train.entry.run_training`; per-epoch LoRA + Adam moments
examples.py   records -> (input, output) examples -> padded batches with loss masks
grads.py      batched per-example LoRA gradients from hooks (activations x output grads)
precondition.py  the LESS Adam feature m'/sqrt(v'+eps); energy shares of the projection dims
projection.py per-layer projection plan (block or Kronecker/two-sided, factored path)
features.py   extraction loop writing resumable float16 shards
store.py      memory-mapped feature shards, merge with a missing-shard report
score.py      LESS scores (cosine, mean per subtask, max over subtasks, lr-weighted) + selection
run.py        `run_influence(seed=, model=, trainer=, deepspeed=, data=, influence=, candidates=,
              out_dir=) -> InfluenceResult` (steps warmup/extract/score/all)
The random matrices come from `jz3.kernels.projection` (Philox keyed by seed, layer, row, column).
"""
