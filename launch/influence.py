"""Influence (LESS) stage: `python launch/influence.py +exp=tiny_influence`.

With `stages.influence.influence.candidates` set, those records are ranked; otherwise the
finished snippets, kd_seed and distill stages in `run_dir` give the pool and the synthesizer.
"""

from jz3.pipeline.pipeline import command

main = command("influence")

if __name__ == "__main__":
    main()
