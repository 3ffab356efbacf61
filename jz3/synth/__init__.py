"""Synthesis at scale (docs/SYNTHESIS.md).

- `run`: `synthesize_shard` (sharded, resumable generation), `merge_shards` (completeness check +
  merged output), `run_synthesis` (the `launch/synthesize.py` entry);
- `backend` (interface, per-record seeds), `hf_backend` (batched KV-cache decode loop),
  `vllm_backend`, `sampling` (per-row seeded top-p), `shard_store` (atomic chunks);
- `records` (completion -> synth record), `parse` (engineer D: completion parser);
- `filter` (`run_filter`), `checks`, `tool_verify` (sandboxed runs), `train_format`;
- `tiny_model` (a random tiny synthesizer folder for tests and benches).
"""
