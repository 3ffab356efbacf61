"""Tokenize and pack the pretraining data (`stages.pretrain.data`: its sources, else the finished
filter stage) into memory-mapped token shards: `python launch/pack.py +exp=tiny_pretrain`
(see docs/DATA.md). Up-to-date sources are skipped, so re-running is cheap.
"""

from jz3.pipeline.pipeline import command

main = command("pack")

if __name__ == "__main__":
    main()
