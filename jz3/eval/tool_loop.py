"""The tool setting: the model writes ```python```, the harness runs it in the sandbox, pastes
```output```, and the model continues (up to `rounds` executions per sample).

`run_cot_exec_loop` is the release's CoT evaluation with code execution (`eval.cot_exec_calls`):
an answer that has no `boxed` and ends with a closed code block has that block run, its output
pasted, and the model continues, for at most `calls` generations."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from jz3.eval.sandbox import ExecResult, SandboxPool
from jz3.generation import GenParams
from jz3.generation import TextGenerator as Generator

_CODE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def last_code_block(text: str) -> Optional[str]:
    blocks = _CODE.findall(text)
    return blocks[-1] if blocks else None


@dataclass
class ToolTrace:
    prompt: str
    completion: str = ""
    executions: List[ExecResult] = field(default_factory=list)
    done: bool = False


def run_tool_loop(gen: Generator, prompts: Sequence[str], stops: Sequence[str],
                  params: GenParams, pool: SandboxPool, rounds: int = 4) -> List[List[ToolTrace]]:
    """`params.n` traces per prompt; each ends when the model writes no new code block, or after
    `rounds` executions (then the model gets one last turn to state the answer)."""
    first = gen.generate(prompts, stops, params)
    traces = [[ToolTrace(p, c) for c in outs] for p, outs in zip(prompts, first, strict=True)]
    flat = [t for ts in traces for t in ts]
    one = GenParams(params.max_new_tokens, params.temperature, params.top_p, 1, params.seed)
    for _ in range(rounds + 1):
        pending: List[ToolTrace] = []
        codes: List[str] = []
        for t in flat:
            if t.done:
                continue
            # the newest chunk must end in a closed code block that has not run yet
            tail = t.completion.rsplit("```output", 1)[-1]
            code = last_code_block(tail)
            if code is None or len(t.executions) >= rounds:
                t.done = True
                continue
            pending.append(t)
            codes.append(code)
        if not pending:
            break
        for t, res in zip(pending, pool.run_many(codes), strict=True):
            t.executions.append(res)
            if not t.completion.endswith("\n"):
                t.completion += "\n"
            t.completion += f"```output\n{res.feedback()}\n```\n"
        more = gen.generate([t.prompt + t.completion for t in pending], stops, one)
        for t, outs in zip(pending, more, strict=True):
            t.completion += outs[0]
    return traces


LIMIT_NOTE = "\nReach max function call limit."


def wants_execution(chunk: str) -> Optional[str]:
    """The code a CoT answer chunk asks to run: its last ```python block, when the chunk (right-
    stripped) has no `boxed` and ends with a closing fence; else None."""
    chunk = chunk.rstrip()
    if "boxed" in chunk or not chunk.endswith("```"):
        return None
    return last_code_block(chunk + "\n")


def run_cot_exec_loop(gen: Generator, prompts: Sequence[str], stops: Sequence[str],
                      params: GenParams, pool: SandboxPool, calls: int = 4
                      ) -> List[List[ToolTrace]]:
    """`params.n` CoT traces per prompt with up to `calls` generations each: after every
    generation but the last, a chunk that `wants_execution` has its code run in the sandbox and
    its output pasted; the last generation's code still runs, with `LIMIT_NOTE` after it."""
    first = gen.generate(prompts, stops, params)
    traces = [[ToolTrace(p, c.rstrip()) for c in outs] for p, outs in zip(prompts, first, strict=True)]
    one = GenParams(params.max_new_tokens, params.temperature, params.top_p, 1, params.seed)
    active = [t for ts in traces for t in ts]
    chunks = [t.completion for t in active]
    for call in range(max(calls, 0)):
        todo = [(t, code) for t, ch in zip(active, chunks, strict=True)
                if (code := wants_execution(ch)) is not None]
        if not todo:
            break
        for (t, _), res in zip(todo, pool.run_many([c for _, c in todo]), strict=True):
            t.executions.append(res)
            t.completion += f"\n```output\n{res.feedback()}\n```\n"
        active = [t for t, _ in todo]
        if call == calls - 1:
            for t in active:
                t.completion += LIMIT_NOTE
            break
        more = gen.generate([t.prompt + t.completion for t in active], stops, one)
        chunks = [outs[0].rstrip() for outs in more]
        for t, ch in zip(active, chunks, strict=True):
            t.completion += ch
    for ts in traces:
        for t in ts:
            t.done = True
    return traces
