"""The whole recipe in one command: `python launch/pipeline.py +exp=demo`.

`pipeline.plan=true` runs nothing: it prints `[plan] <stage> <json>` per stage (the resolved
config section each stage will run with) and exits. Locally (launcher=local) the stages run
one after another in this process, cached stages are skipped, the plan goes to
`runs/<exp>/plan.txt` and `runs/<exp>/report.md` is written at the end. With `launcher=slurm`
every stage is submitted as a submitit job (`launcher.dry_run=true` prints the plan and the jobs).
A failed stage ends the command with exit status 1 and its cause as the last line.
"""

from jz3.pipeline.pipeline import command

main = command()

if __name__ == "__main__":
    main()
