"""Record IO, tokenizers, packing, sampling, snippets, dedup and decontamination."""
