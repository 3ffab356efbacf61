"""Filter stage: `python launch/filter.py +exp=... stages.filter.filter.input=runs/x/synth.jsonl`
(or, without `input`, the finished synthesize stage in `run_dir`). Writes cot/ and tool/
training examples and rejected.jsonl under `${run_dir}/filter/out/` (see jz3.synth.filter).
"""

from jz3.pipeline.pipeline import command

main = command("filter")

if __name__ == "__main__":
    main()
