"""Cut corpus documents into ~`size`-character snippets for the teacher prompts.

Contract (used by launch/kd.py and the pipeline's `snippets` stage):
`make_snippets(snippet_cfg, mixture, out_path) -> SnippetStats` reads the corpus records named
by `snippet_cfg.corpus`, cuts each document at paragraph boundaries (then sentence boundaries,
then whitespace, only for over-long units) into pieces close to `size` characters, samples at
most `max_snippets` of them by `source_weights` (seeded; a source with weight 0 is left out),
gives each a prompt type from `mixture` (`jz3.prompts.assign_prompt_type`) and writes snippet
records `{id, doc_id, text, source, prompt_type}` to `out_path` atomically. Pieces shorter than
`min_size` that cannot be merged into a neighbour, and bad corpus records, go to
`rejected.jsonl` beside `out_path`, with a reason. Snippet ids are `<doc_id>:<k>` (stable).

With `snippets.rule: release` each source is cut as the release's builder for its kind
(`snippets.kinds`, `release_pieces`): textbook per `## ` section (the snippet is fenced in the
prompt: `fence: true`), arXiv per `\\section{}` part, web and wiki the head of the document,
stack the question's head + the answer's head, each at most `size` characters; a wiki snippet
is written once per CoT level (`<doc_id>:<k>:<level>`), the others draw one type from `mixture`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from tqdm import tqdm

from jz3.config.data import SnippetConfig
from jz3.config.enums import CorpusKind, OnError, PromptType, SnippetRule
from jz3.config.validate import check
from jz3.data.records import (
    IOStats,
    Quarantine,
    RecordError,
    RecordKind,
    Stats,
    expand_paths,
    read_records,
    write_jsonl,
)
from jz3.prompts import COT_TYPES, PROMPT_TYPES, assign_prompt_type, normalize_mixture
from jz3.prompts.mixture import unit_hash

log = logging.getLogger(__name__)
__all__ = ["PROMPT_TYPES", "PromptType", "SnippetStats", "cut_document", "make_snippets",
           "release_pieces"]

_PARA = re.compile(r"\n[ \t]*\n+")
_SENT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[$\\A-Z0-9])")
OVERFLOW = 1.5  # a snippet may exceed `size` by this factor when that lands closer to `size`
_MD_SECTION = re.compile(r"^##[ \t]+.*$", re.MULTILINE)
_TEX_SECTION = re.compile(r"\\section\{.*?\}")


@dataclass
class SnippetStats:
    documents: int = 0
    pieces: int = 0
    too_short: int = 0
    excluded_by_weight: int = 0
    not_sampled: int = 0
    written: int = 0
    corpus_rejected: int = 0
    by_source: Dict[str, int] = field(default_factory=dict)
    by_prompt_type: Dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> Stats:
        return asdict(self)


def _split_long(unit: str, limit: int) -> List[str]:
    """Split a unit longer than `limit` at sentence ends, then at whitespace."""
    if len(unit) <= limit:
        return [unit]
    out: List[str] = []
    for sent in _SENT.split(unit):
        while len(sent) > limit:
            cut = sent.rfind(" ", limit // 2, limit)
            cut = cut if cut > 0 else limit
            out.append(sent[:cut].strip())
            sent = sent[cut:].strip()
        if sent:
            out.append(sent)
    return out


def _units(text: str, size: int) -> List[Tuple[str, str]]:
    """(separator before, text) units: paragraphs, or sentences of over-long paragraphs."""
    units: List[Tuple[str, str]] = []
    for para in _PARA.split(text.strip()):
        para = para.strip()
        if not para:
            continue
        for j, piece in enumerate(_split_long(para, size)):
            units.append(("\n\n" if j == 0 else " ", piece))
    return units


def cut_document(text: str, size: int, min_size: int) -> Tuple[List[str], List[str]]:
    """(snippets, too-short leftovers) of one document, cut at paragraph/sentence boundaries.

    Units are packed greedily; a unit joins the current snippet while the result stays within
    `size`, or overshoots it by less than the current snippet falls short (capped at 1.5x size).
    """
    chunks: List[str] = []
    cur = ""
    for sep, unit in _units(text, size):
        if not cur:
            cur = unit
            continue
        joined = len(cur) + len(sep) + len(unit)
        closer = joined - size < size - len(cur)
        if joined <= size or (closer and joined <= OVERFLOW * size):
            cur = cur + sep + unit
        else:
            chunks.append(cur)
            cur = unit
    if cur:
        chunks.append(cur)
    kept: List[str] = []
    short: List[str] = []
    for chunk in chunks:
        if len(chunk) >= min_size:
            kept.append(chunk)
        elif kept and len(kept[-1]) + 2 + len(chunk) <= OVERFLOW * size:
            kept[-1] = kept[-1] + "\n\n" + chunk
        else:
            short.append(chunk)
    return kept, short


def _markdown_sections(text: str) -> List[str]:
    """The `## ` sections of a markdown text, each from its header on; the text before the first
    header is left out (as the release's textbook builder does). No header: the whole text."""
    starts = [m.start() for m in _MD_SECTION.finditer(text)]
    if not starts:
        return [text]
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)], strict=True)]


def release_pieces(doc: Mapping[str, Any], kind: CorpusKind, size: int) -> List[str]:
    """The snippets the release's builder for `kind` takes from one corpus document: the head
    (`size` characters) of each `## ` section (textbook) or `\\section{}` part (arxiv), of the
    document (web, wiki), or of its question and its answer joined by a blank line (stack: the
    record's `question` / `answer` fields, else its text). Empty pieces are left out."""
    text = doc["text"]
    kind = CorpusKind(kind)
    if kind == CorpusKind.textbook:
        parts = _markdown_sections(text)
    elif kind == CorpusKind.arxiv:
        parts = _TEX_SECTION.split(text)
    elif kind == CorpusKind.stack and isinstance(doc.get("question"), str) \
            and isinstance(doc.get("answer"), str):
        return [f"{doc['question'].strip()[:size]}\n\n{doc['answer'].strip()[:size]}"]
    else:
        parts = [text]
    return [p.strip()[:size] for p in parts if p.strip()]


def _kind_of(cfg: SnippetConfig, source: str) -> CorpusKind:
    kind = (cfg.kinds or {}).get(source, cfg.default_kind)
    if kind is None:
        raise ValueError(f"snippets.kinds: no kind for corpus source {source!r} (rule=release); "
                         f"map it to one of {[k.value for k in CorpusKind]} or set "
                         "snippets.default_kind")
    return CorpusKind(kind)


def _release_records(doc: Mapping[str, Any], kind: CorpusKind, size: int
                     ) -> List[Dict[str, Any]]:
    """Snippet records of one document under the release's rule (wiki: one per CoT level)."""
    out: List[Dict[str, Any]] = []
    for k, piece in enumerate(release_pieces(doc, kind, size)):
        base = {"doc_id": doc["id"], "text": piece, "source": doc["source"]}
        if kind == CorpusKind.wiki:
            out += [{"id": f"{doc['id']}:{k}:{pt.value}", **base, "prompt_type": pt.value}
                    for pt in COT_TYPES]
            continue
        rec = {"id": f"{doc['id']}:{k}", **base}
        if kind == CorpusKind.textbook:
            rec["fence"] = True
        out.append(rec)
    return out


def _weighted_sample(items: List[Dict[str, Any]], weights: Mapping[str, float], k: int,
                     seed: int) -> List[Dict[str, Any]]:
    """k items without replacement, P proportional to their source weight (Efraimidis-Spirakis)."""
    def key(rec: Dict[str, Any]) -> float:
        u = max(unit_hash("snippet_sample", seed, rec["id"]), 1e-300)
        return math.log(u) / float(weights.get(rec["source"], 1.0))

    chosen = sorted(items, key=key, reverse=True)[:k]
    order = {id(r): i for i, r in enumerate(items)}
    return sorted(chosen, key=lambda r: order[id(r)])


def _cut_all(files: List[str], cfg: SnippetConfig, weights: Mapping[str, float],
             stats: SnippetStats, io: IOStats, rejected: Path,
             pieces: List[Dict[str, Any]]) -> None:
    """Read the corpus files, cut each document, append the pieces to `pieces`."""
    with Quarantine(rejected) as quarantine:
        docs: Iterable[Dict[str, Any]] = read_records(
            files, RecordKind.corpus, OnError.quarantine, quarantine, io)
        for doc in tqdm(docs, desc="snippets", unit="doc", mininterval=2.0):
            stats.documents += 1
            if SnippetRule(cfg.rule) == SnippetRule.release:
                recs = _release_records(doc, _kind_of(cfg, doc["source"]), cfg.size)
                stats.pieces += len(recs)
                if weights.get(doc["source"], 1.0) <= 0:
                    stats.excluded_by_weight += len(recs)
                else:
                    pieces.extend(recs)
                continue
            kept, short = cut_document(doc["text"], cfg.size, cfg.min_size)
            for chunk in short:
                stats.too_short += 1
                quarantine.add(f"too_short: {len(chunk)} < min_size {cfg.min_size} chars",
                               {"doc_id": doc["id"], "source": doc["source"], "text": chunk})
            for k, chunk in enumerate(kept):
                rec = {"id": f"{doc['id']}:{k}", "doc_id": doc["id"], "text": chunk,
                       "source": doc["source"]}
                stats.pieces += 1
                if weights.get(doc["source"], 1.0) <= 0:
                    stats.excluded_by_weight += 1
                    continue
                pieces.append(rec)


def make_snippets(snippet_cfg: SnippetConfig, mixture: Optional[Mapping[str, float]],
                  out_path: os.PathLike | str) -> SnippetStats:
    """Cut, sample and label snippets; write them to `out_path` (see the module docstring)."""
    cfg = snippet_cfg
    if not cfg.corpus:
        raise ValueError("snippets.corpus is empty: name at least one corpus JSONL file or glob")
    check(cfg, "snippets")
    if cfg.size <= 0 or not 0 <= cfg.min_size <= cfg.size:
        raise ValueError(f"snippets.size={cfg.size} / min_size={cfg.min_size}: need 0 <= min_size <= size")
    for src, w in (cfg.source_weights or {}).items():
        if float(w) < 0:
            raise ValueError(f"snippets.source_weights[{src!r}] = {w} must be >= 0")
    mix = normalize_mixture(mixture)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejected_path = out.parent / "rejected.jsonl"
    tmp_rejected = out.parent / ".rejected.jsonl.tmp"
    tmp_rejected.unlink(missing_ok=True)
    weights = {k: float(v) for k, v in (cfg.source_weights or {}).items()}
    stats = SnippetStats()
    io = IOStats()
    pieces: List[Dict[str, Any]] = []
    files = [str(f) for f in expand_paths(list(cfg.corpus))]
    try:
        _cut_all(files, cfg, weights, stats, io, tmp_rejected, pieces)
    except BaseException:
        tmp_rejected.unlink(missing_ok=True)  # no temp file outlives a failed run
        raise
    stats.corpus_rejected = io.rejected
    if not pieces:
        if tmp_rejected.exists():
            os.replace(tmp_rejected, rejected_path)
        else:
            rejected_path.unlink(missing_ok=True)
        bad = f"; {io.rejected} bad lines, see {rejected_path}" if io.rejected else ""
        why = (f"no corpus records (empty input{bad})" if stats.documents == 0 else
               f"{stats.documents} documents gave no snippet ({stats.too_short} pieces shorter "
               f"than snippets.min_size={cfg.min_size}, {stats.excluded_by_weight} of sources "
               "with weight 0)")
        raise RecordError(", ".join(files), 0, f"snippets.corpus: {why}")
    if cfg.max_snippets is not None and cfg.max_snippets < len(pieces):
        chosen = _weighted_sample(pieces, weights, cfg.max_snippets, cfg.seed)
        stats.not_sampled = len(pieces) - len(chosen)
    else:
        chosen = pieces
    for rec in chosen:
        if "prompt_type" not in rec:  # release wiki snippets come with their level
            rec["prompt_type"] = assign_prompt_type(rec["id"], mix, cfg.seed).value
        stats.by_source[rec["source"]] = stats.by_source.get(rec["source"], 0) + 1
        stats.by_prompt_type[rec["prompt_type"]] = stats.by_prompt_type.get(rec["prompt_type"], 0) + 1
    stats.written = write_jsonl(out, chosen)
    if tmp_rejected.exists():
        os.replace(tmp_rejected, rejected_path)
    else:
        rejected_path.unlink(missing_ok=True)
    log.info("snippets: %d documents -> %d pieces -> %d written to %s (%d too short, %d bad records)",
             stats.documents, stats.pieces, stats.written, out, stats.too_short, stats.corpus_rejected)
    return stats


@dataclass
class SnippetsResult:
    """What the snippets stage wrote."""

    snippets: str  # snippets.jsonl: {id, doc_id, text, source, prompt_type}
    rejected: str  # rejected.jsonl (may be absent: nothing rejected)
    count: int = 0
    stats: Stats = field(default_factory=dict)  # SnippetStats as a dict


def run_snippets(cfg: SnippetConfig, mixture: Optional[Mapping[str, float]],
                 out_dir: os.PathLike | str) -> SnippetsResult:
    """The snippets stage body: `out_dir/snippets.jsonl` (see `make_snippets`)."""
    out = Path(out_dir)
    st = make_snippets(cfg, mixture, out / "snippets.jsonl")
    return SnippetsResult(snippets=str(out / "snippets.jsonl"),
                          rejected=str(out / "rejected.jsonl"), count=st.written,
                          stats=st.as_dict())


def sample_ids(snippets_path: os.PathLike | str, count: int, seed: int,
               exclude: Iterable[str] = ()) -> List[str]:
    """`count` snippet ids drawn uniformly at random (seeded) across every source, leaving out
    `exclude`; all remaining ids when there are fewer. Returned in file order."""
    if count < 0:
        raise ValueError(f"snippet sample count must be >= 0, got {count}")
    skip = set(exclude)
    ids = [r["id"] for r in read_records(snippets_path, RecordKind.snippet) if r["id"] not in skip]
    if count >= len(ids):
        return ids
    import random

    pick = set(random.Random(seed).sample(range(len(ids)), count))
    return [x for i, x in enumerate(ids) if i in pick]
