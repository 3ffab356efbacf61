"""Instruction tuning: `deepspeed launch/sft.py +exp=tiny_sft` (the `sft` stage); loss on the
`output` of {input, output} records from `stages.sft.data.sources`. Starts from
`stages.sft.trainer.init_from` when set, else from the finished pretrain stage's export.
"""

from jz3.pipeline.pipeline import command

main = command("sft")

if __name__ == "__main__":
    main()
