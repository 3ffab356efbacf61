"""Tool-data verification: run the solution's program in the evaluation sandbox (bubblewrap jail
+ fork server, jz3.eval.sandbox) and keep it only when it exits 0 and what it prints matches the
answer the solution states. Without a jail `ToolVerifier` raises `SandboxUnavailable` (unless
`eval.sandbox.unsafe`), so tool records are never silently dropped or silently run unjailed."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence

from jz3.config.eval import SandboxConfig
from jz3.eval.grading import answers_match
from jz3.eval.sandbox import ExecResult, SandboxPool

_PY_BLOCK = re.compile(r"```python[ \t]*\n(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def program_of(rec: Dict[str, Any]) -> Optional[str]:
    """The record's program: its parsed `code`, else the python blocks of its solution."""
    if rec.get("code"):
        return rec["code"]
    blocks = _PY_BLOCK.findall(rec.get("solution", ""))
    return "\n".join(blocks) if blocks else None


def printed_matches(stdout: str, answer: str) -> bool:
    """Does the printed output state `answer`? (last line, whole output, or last number)."""
    lines = [ln.strip() for ln in stdout.strip().splitlines() if ln.strip()]
    if not lines:
        return False
    candidates = [lines[-1], " ".join(lines), lines[-1].strip("[](){} ")]
    nums = _NUMBER.findall(lines[-1])
    if nums:
        candidates.append(nums[-1])
    return any(answers_match(c, answer, "math-oai") for c in candidates)


def verdict(rec: Dict[str, Any], res: Optional[ExecResult]) -> Optional[str]:
    """None when verified, else the rejection reason."""
    answer = rec.get("answer")
    if res is None:
        return "tool_no_code: no python program in the solution"
    if res.timed_out:
        return f"tool_timeout: the program ran past the limit ({res.wall_s:.1f}s)"
    if res.error:
        tail = (res.stderr.strip().splitlines() or [""])[-1][:200]
        return f"tool_error: {res.error} {tail}".rstrip()
    if not answer or not str(answer).strip():
        return "tool_no_answer: the solution states no answer to compare with"
    if not printed_matches(res.stdout, str(answer)):
        printed = res.stdout.strip()[-120:]
        return f"tool_mismatch: printed {printed!r} but the solution states {answer!r}"
    return None


class ToolVerifier:
    """Runs programs concurrently (`workers`) in `jz3.eval.sandbox`."""

    def __init__(self, limits: SandboxConfig, timeout_s: float, workers: int):
        self.limits = replace(limits, wall_time_s=timeout_s,
                              cpu_time_s=max(1, int(round(timeout_s))), workers=workers)
        self.pool = SandboxPool(self.limits)

    def verify(self, records: Sequence[Dict[str, Any]]) -> List[Optional[str]]:
        """One reason (None = verified) per record, in order."""
        programs = [program_of(r) for r in records]
        runnable = [p for p in programs if p]
        results = iter(self.pool.run_many(runnable))
        return [verdict(r, next(results) if p else None)
                for r, p in zip(records, programs, strict=True)]

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> ToolVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
