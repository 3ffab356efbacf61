"""The offline teacher: answers each request with a real problem + solution from local pools.

An honest stand-in for a GPT-4 teacher, so the demo needs no network. Pool items are human- or
dataset-written problems with solutions (GSM8K train `{question, answer}`; MATH train
`{problem, solution}`; JiuZhang3.0 samples `{input, output}`), normalised to the completion format of `jz3.synth.parse` with a `\\boxed{}`
answer, and sorted into tiers by content: `tool` (a ```python solution), `elementary` (GSM8K, or
no LaTeX math) and `advanced` (the rest). Grade and middle school prompts draw from the
elementary tier, the other chain-of-thought stages from the advanced tier, the tool prompt from
the tool tier (a tier with no items falls back to all chain-of-thought items). Within the tier,
the `top_k` items nearest to the snippet by TF-IDF cosine (word unigrams + bigrams, sparse) are
candidates and the request's key picks one, so the answer is deterministic per prompt. The
record's `model` is `offline:<pool file>`. Items that cannot be normalised are counted, not used;
so are items whose completion is longer than `max_chars` (`teacher.offline_max_chars`: a tiny
synthesizer learns the format of short completions much sooner; counted as `too_long`).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from jz3.config.enums import PromptType
from jz3.data.records import RecordKind, read_records
from jz3.prompts.mixture import unit_hash
from jz3.synth.parse import (
    ParseError,
    extract_answer_phrase,
    extract_boxed,
    format_completion,
    parse_completion,
)
from jz3.teacher.types import PermanentError, TeacherRequest, TeacherResponse

log = logging.getLogger(__name__)

ELEMENTARY, ADVANCED, TOOL = "elementary", "advanced", "tool"
STAGE_TIER = {PromptType.grade_school: ELEMENTARY, PromptType.middle_school: ELEMENTARY,
              PromptType.tool: TOOL}
_WORD = re.compile(r"[a-z]+|\d+")
_LATEX = re.compile(r"\$|\\\(|\\\[|\\frac|\\sqrt|\^")
_CALC = re.compile(r"<<[^<>]*>>")


@dataclass
class PoolItem:
    problem: str
    solution: str
    tier: str
    source: str  # e.g. "gsm8k/train"

    def completion(self) -> str:
        return format_completion(self.problem, self.solution, tool=self.tier == TOOL)


def _source_name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _from_gsm8k(rec: Dict[str, Any], source: str) -> PoolItem:
    body, _, final = str(rec["answer"]).rpartition("####")
    if not final.strip():
        raise ValueError("no '#### answer' line")
    steps = _CALC.sub("", body).strip()
    solution = f"{steps}\nThe answer is $\\boxed{{{final.strip()}}}$."
    return PoolItem(str(rec["question"]).strip(), solution, ELEMENTARY, source)


def _from_input_output(rec: Dict[str, Any], source: str) -> PoolItem:
    text = str(rec["input"]) + str(rec["output"])
    tool = "```python" in str(rec["output"])
    parsed = parse_completion(text, PromptType.tool if tool else PromptType.college,
                              require_answer=not tool)
    solution = parsed.solution
    if not tool and extract_boxed(solution) is None:
        # "The answer is: 905" -> keep the sentence, add the boxed form the prompts ask for.
        solution = f"{solution}\nSo the final answer is $\\boxed{{{extract_answer_phrase(solution)}}}$."
    if tool and parsed.answer is None:
        if not parsed.code_output or not parsed.code_output.strip():
            raise ValueError("a code solution with neither output nor \\boxed answer")
        solution = f"{solution}\nThe answer is $\\boxed{{{parsed.code_output.strip().splitlines()[-1]}}}$."
    tier = TOOL if tool else (ADVANCED if _LATEX.search(text) else ELEMENTARY)
    return PoolItem(parsed.problem, solution, tier, source)


def _from_problem_solution(rec: Dict[str, Any], source: str) -> PoolItem:
    """A MATH-style item: the answer is the solution's last `\\boxed{}`."""
    problem, solution = str(rec["problem"]).strip(), str(rec["solution"]).strip()
    if not problem or not solution:
        raise ValueError("empty problem or solution")
    if extract_boxed(solution) is None:
        raise ValueError("no \\boxed answer in the solution")
    tier = ADVANCED if _LATEX.search(problem + solution) else ELEMENTARY
    return PoolItem(problem, solution, tier, source)


def load_pool(paths: Sequence[str],
              max_chars: Optional[int] = None) -> Tuple[List[PoolItem], Counter]:
    """Pool items from the files, and a Counter of items left out by reason (`too_long`: the
    completion has more than `max_chars` characters)."""
    if max_chars is not None and max_chars <= 0:
        raise ValueError(f"teacher.offline_max_chars must be > 0 or null, got {max_chars}")
    items: List[PoolItem] = []
    skipped: Counter = Counter()
    for path in paths:
        p = Path(path)
        source = _source_name(p)
        for rec in read_records(p, RecordKind.any):
            try:
                if "question" in rec and "answer" in rec:
                    item = _from_gsm8k(rec, source)
                elif "problem" in rec and "solution" in rec:
                    item = _from_problem_solution(rec, source)
                elif "input" in rec and "output" in rec:
                    item = _from_input_output(rec, source)
                else:
                    skipped["unknown_format"] += 1
                    continue
            except ParseError as e:
                skipped[e.reason.value] += 1
                continue
            except ValueError as e:
                skipped[str(e).split(":")[0]] += 1
                continue
            if max_chars is not None and len(item.completion()) > max_chars:
                skipped["too_long"] += 1
                continue
            items.append(item)
    if skipped:
        log.info("offline teacher: %d pool items left out: %s", sum(skipped.values()), dict(skipped))
    return items, skipped


def _terms(text: str) -> List[str]:
    words = _WORD.findall(text.lower())
    return words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]


class TfidfIndex:
    """Sparse TF-IDF (sublinear tf, smooth idf, L2-normalised rows) over word 1-2 grams."""

    def __init__(self, texts: Sequence[str]):
        self.vocab: Dict[str, int] = {}
        setdefault = self.vocab.setdefault
        ids = [np.fromiter((setdefault(t, len(self.vocab)) for t in _terms(text)), np.int64)
               for text in texts]
        counts = self._counts(ids, len(self.vocab))
        df = np.bincount(counts.indices, minlength=len(self.vocab))
        n = len(texts)
        self.idf = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
        self.matrix = self._weigh(counts)

    @staticmethod
    def _counts(ids: Sequence[np.ndarray], dim: int) -> sp.csr_matrix:
        rows = np.repeat(np.arange(len(ids)), [len(a) for a in ids])
        cols = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(ids), dim))
        m.sum_duplicates()
        return m

    def _weigh(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        m = counts.copy()
        m.data = (1.0 + np.log(m.data)) * self.idf[m.indices]
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ m)

    def query(self, text: str) -> sp.csr_matrix:
        got = [self.vocab.get(t) for t in _terms(text)]
        ids = np.asarray([i for i in got if i is not None], np.int64)
        return self._weigh(self._counts([ids], len(self.vocab)))


class OfflineTeacher:
    """A `TeacherBackend` that answers from the local pools (no network, cost 0)."""

    billable = False

    def __init__(self, pools: Sequence[str], name: str = "offline-pool", top_k: int = 4,
                 max_chars: Optional[int] = None):
        if not pools:
            raise ValueError("teacher.offline_pools is empty: the offline teacher needs a pool")
        self.name = name
        self.top_k = max(1, top_k)
        self.max_chars = max_chars
        self.items, self.skipped = load_pool(pools, max_chars)
        if not self.items:
            raise ValueError(f"no usable item in the offline pools {list(pools)}"
                             + (f" with teacher.offline_max_chars={max_chars}" if max_chars else ""))
        self.index = TfidfIndex([it.problem + "\n" + it.solution for it in self.items])
        tiers = np.asarray([it.tier for it in self.items])
        cot = np.flatnonzero(tiers != TOOL)
        self.tier_rows: Dict[str, np.ndarray] = {}
        self.tier_matrix: Dict[str, sp.csr_matrix] = {}
        for tier in (ELEMENTARY, ADVANCED, TOOL):
            rows = np.flatnonzero(tiers == tier)
            self.tier_rows[tier] = rows if len(rows) else cot
            self.tier_matrix[tier] = sp.csr_matrix(self.index.matrix[self.tier_rows[tier]])
        log.info("offline teacher: %d items (%s)", len(self.items), dict(Counter(tiers.tolist())))

    def pick(self, req: TeacherRequest) -> PoolItem:
        tier = STAGE_TIER.get(PromptType(req.prompt_type), ADVANCED)
        rows = self.tier_rows[tier]
        if len(rows) == 0:
            raise PermanentError(f"offline_pool_empty: no item for tier {tier}")
        q = self.index.query(req.snippet or req.prompt)
        s = np.asarray((self.tier_matrix[tier] @ q.T).todense()).ravel()
        k = min(self.top_k, len(rows))
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.lexsort((rows[top], -s[top]))]  # by score, ties by row: deterministic
        choice = int(unit_hash("offline_pick", req.key) * k)
        return self.items[int(rows[top[choice]])]

    async def send(self, req: TeacherRequest, params: Dict[str, Any],
                   timeout_s: float) -> TeacherResponse:
        item = self.pick(req)
        text = item.completion()
        usage = {"prompt_tokens": len(req.prompt.split()), "completion_tokens": len(text.split()),
                 "estimated": True}
        return TeacherResponse(text=text, model=f"offline:{item.source}", usage=usage,
                               finish_reason="stop")

    async def aclose(self) -> None:
        return None

    def describe(self) -> Dict[str, Any]:
        tiers = Counter(it.tier for it in self.items)
        return {"items": len(self.items), "tiers": dict(tiers), "skipped": dict(self.skipped),
                "max_chars": self.max_chars}
