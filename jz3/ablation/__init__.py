"""The synthetic-vs-raw ablation: its arms (`arms`: training at matched tokens and seeds),
the scoring of every model (`score`), the verdict (`verdict`) and the typed results
(`results`). The pipeline's `pretrain_raw` and `ablation` stages call these; experiment
presets (e.g. `+exp=smol_ablation`) set them up."""
