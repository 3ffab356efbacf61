"""Synthesis at scale (docs/SYNTHESIS.md).

- `run`: `synthesize_shard` (sharded, resumable generation), `merge_shards` (completeness check +
  merged output -> `SynthResult`), `run_synthesize` (every shard, then the merge);
- `generator` (the synthesizer as a `jz3.generation.Generator`: HF decode loop or vLLM, per-record
  seeds), `shard_store` (atomic chunks);
- `records` (completion -> synth record), `parse` (the completion parser);
- `filter` (`run_filter(FilterConfig, SandboxConfig, synth_path, out_dir) -> FilterResult`), `checks`, `tool_verify` (sandboxed runs), `train_format`.
Tiny random synthesizers for tests and benches: `jz3.generation.tiny_model`.
"""
