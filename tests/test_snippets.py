"""Cutting the corpus into ~1,000-character snippets, with source weights and prompt types."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from jz3.config.data import SnippetConfig
from jz3.data.records import RecordKind, read_records, write_jsonl
from jz3.data.snippets import PROMPT_TYPES, cut_document, make_snippets, sample_ids


def _doc(n_paras: int, words: int = 30) -> str:
    paras = []
    for p in range(n_paras):
        sents = [f"Paragraph {p} sentence {s} has " + "word " * words + "end." for s in range(3)]
        paras.append(" ".join(sents))
    return "\n\n".join(paras)


def test_cut_document_cuts_at_boundaries_near_the_target_size():
    text = _doc(12)
    kept, short = cut_document(text, size=1000, min_size=200)
    assert short == []
    assert all(200 <= len(k) <= 1500 for k in kept)
    assert sum(abs(len(k) - 1000) < 400 for k in kept) >= len(kept) - 1
    for k in kept:  # every snippet starts and ends on a sentence boundary
        assert k.startswith("Paragraph") and k.endswith("end.")
    # nothing lost: the snippets hold every sentence of the document, in order
    assert " ".join(" ".join(k.split()) for k in kept) == " ".join(text.split())


def test_cut_document_splits_one_huge_paragraph_by_sentences():
    huge = " ".join(f"Sentence number {i} is right here." for i in range(200))
    kept, _ = cut_document(huge, size=500, min_size=100)
    assert len(kept) > 5 and all(len(k) <= 750 for k in kept)
    assert all(k.endswith("here.") for k in kept)
    kept, short = cut_document("Too short.", size=500, min_size=100)
    assert kept == [] and short == ["Too short."]


def _corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [{"id": f"a{i}", "text": _doc(6), "source": "alpha"} for i in range(20)]
    rows += [{"id": f"b{i}", "text": _doc(6), "source": "beta"} for i in range(20)]
    rows += [{"id": "tiny", "text": "Short.", "source": "beta"}]
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
        fh.write('{"id": "broken", "text": 5, "source": "beta"}\n')
    return path


def test_make_snippets_writes_valid_seeded_records_and_rejects_with_reasons(tmp_path):
    corpus = _corpus(tmp_path)
    cfg = SnippetConfig(corpus=[str(corpus)], size=600, min_size=100, seed=3)
    stats = make_snippets(cfg, {"grade_school": 1, "tool": 1}, tmp_path / "s" / "snippets.jsonl")
    recs = list(read_records(tmp_path / "s" / "snippets.jsonl", RecordKind.snippet))
    assert len(recs) == stats.written == stats.pieces
    assert len({r["id"] for r in recs}) == len(recs)
    assert {r["prompt_type"] for r in recs} == {"grade_school", "tool"}
    rejected = [json.loads(line) for line in open(tmp_path / "s" / "rejected.jsonl")]
    assert sorted(r["reason"].split(":")[0] for r in rejected) == ["expected string, got int", "too_short"]
    bad = next(r for r in rejected if r["reason"].startswith("expected"))
    assert bad["field"] == "text" and bad["line"] == 42  # the bad record, with its place
    assert stats.too_short == 1 and stats.corpus_rejected == 1
    # same config -> same bytes; another seed -> other prompt types
    again = tmp_path / "again.jsonl"
    make_snippets(cfg, {"grade_school": 1, "tool": 1}, again)
    assert again.read_bytes() == (tmp_path / "s" / "snippets.jsonl").read_bytes()
    cfg.seed = 4
    make_snippets(cfg, {"grade_school": 1, "tool": 1}, again)
    assert again.read_bytes() != (tmp_path / "s" / "snippets.jsonl").read_bytes()


def test_source_weights_shape_the_sample(tmp_path):
    corpus = _corpus(tmp_path)
    cfg = SnippetConfig(corpus=[str(corpus)], size=600, min_size=100, max_snippets=40,
                        source_weights={"alpha": 9.0, "beta": 1.0}, seed=0)
    stats = make_snippets(cfg, None, tmp_path / "w.jsonl")
    assert stats.written == 40 and stats.not_sampled == stats.pieces - 40
    assert stats.by_source["alpha"] > 3 * stats.by_source.get("beta", 0)
    cfg.source_weights = {"beta": 0}
    cfg.max_snippets = None
    stats = make_snippets(cfg, None, tmp_path / "w.jsonl")
    assert set(stats.by_source) == {"alpha"} and stats.excluded_by_weight > 0


def test_real_corpus_snippets(shared_data, tmp_path):
    cfg = SnippetConfig(corpus=[str(shared_data / "corpus" / "levin-discrete.jsonl")],
                        max_snippets=300, seed=0)
    stats = make_snippets(cfg, None, tmp_path / "snippets.jsonl")
    recs = list(read_records(tmp_path / "snippets.jsonl", RecordKind.snippet))
    assert stats.written == 300 == len(recs)
    lengths = sorted(len(r["text"]) for r in recs)
    assert lengths[0] >= cfg.min_size and lengths[-1] <= 1500
    assert 700 <= lengths[len(lengths) // 2] <= 1200  # median near the 1,000-char target
    assert len(Counter(r["prompt_type"] for r in recs)) == len(PROMPT_TYPES)


def test_sample_ids_is_seeded_random_across_sources_not_file_order(tmp_path):
    # 4 sources of 250 snippets, in file order one source after another
    recs = [{"id": f"{src}:{i}", "doc_id": f"{src}{i}", "text": "t", "source": src,
             "prompt_type": "grade_school"} for src in ("a", "b", "c", "d") for i in range(250)]
    path = tmp_path / "snippets.jsonl"
    write_jsonl(path, recs)
    ids = sample_ids(path, 200, seed=1)
    assert len(ids) == len(set(ids)) == 200
    assert ids != [r["id"] for r in recs[:200]]  # not the first N in file order
    by_src = Counter(i.split(":")[0] for i in ids)
    assert set(by_src) == {"a", "b", "c", "d"} and min(by_src.values()) > 25
    assert sample_ids(path, 200, seed=1) == ids and sample_ids(path, 200, seed=2) != ids
    order = {r["id"]: k for k, r in enumerate(recs)}
    assert [order[i] for i in ids] == sorted(order[i] for i in ids)  # file order kept
    rest = sample_ids(path, 300, seed=1, exclude=ids)
    assert not set(rest) & set(ids) and len(rest) == 300
    assert len(sample_ids(path, 5000, seed=0)) == 1000  # fewer than asked: all of them


# ------------------------------------------------------------------ the release's per-source rules
def test_release_pieces_follow_each_builder():
    from jz3.config.enums import CorpusKind
    from jz3.data.snippets import release_pieces

    md = "Preface text.\n\n## One\nalpha " + "a" * 1200 + "\n## Two\nbeta\n### Sub\nstill two"
    tb = release_pieces({"text": md}, CorpusKind.textbook, 1000)
    assert len(tb) == 2 and tb[0].startswith("## One") and len(tb[0]) == 1000  # preface left out
    assert tb[1] == "## Two\nbeta\n### Sub\nstill two"  # a ### header does not cut
    tex = r"\title{T} intro \section{A} first part \section{B} second part"
    assert release_pieces({"text": tex}, CorpusKind.arxiv, 1000) == [
        r"\title{T} intro", "first part", "second part"]
    long = "  " + "w " * 900
    for kind in (CorpusKind.web, CorpusKind.wiki):
        (head,) = release_pieces({"text": long}, kind, 1000)
        assert head == long.strip()[:1000]
    qa = {"text": "ignored", "question": " Q? " + "q" * 1500, "answer": "A " + "b" * 1500}
    (st,) = release_pieces(qa, CorpusKind.stack, 1000)
    q, a = st.split("\n\n")
    assert q.startswith("Q?") and len(q) == len(a) == 1000
    assert release_pieces({"text": "plain post"}, CorpusKind.stack, 1000) == ["plain post"]


def test_release_rule_levels_and_fences(tmp_path):
    from jz3.config.enums import SnippetRule
    from jz3.prompts import COT_TYPES, render_snippet

    docs = [{"id": "tb1", "source": "books", "text": "## A\nFirst section text.\n## B\nSecond."},
            {"id": "wk1", "source": "wiki", "text": "A group is a set with an operation."},
            {"id": "web1", "source": "web", "text": "Short web page about primes."}]
    corpus = tmp_path / "c.jsonl"
    write_jsonl(corpus, docs)
    cfg = SnippetConfig(corpus=[str(corpus)], rule=SnippetRule.release, seed=0,
                        kinds={"books": "textbook", "wiki": "wiki", "web": "web"})
    stats = make_snippets(cfg, None, tmp_path / "s.jsonl")
    recs = list(read_records(tmp_path / "s.jsonl", RecordKind.snippet))
    by_src = Counter(r["source"] for r in recs)
    assert by_src == {"books": 2, "wiki": len(COT_TYPES), "web": 1} and stats.too_short == 0
    assert sorted(r["prompt_type"] for r in recs if r["source"] == "wiki") == sorted(
        t.value for t in COT_TYPES)  # a wiki snippet at every CoT level
    book = next(r for r in recs if r["source"] == "books")
    assert book["fence"] is True and f"```\n{book['text']}\n```" in render_snippet(book)
    web = next(r for r in recs if r["source"] == "web")
    assert "fence" not in web and "```" not in render_snippet(web)
    cfg.kinds = {"books": "textbook"}
    with pytest.raises(ValueError, match="no kind for corpus source 'wiki'"):
        make_snippets(cfg, None, tmp_path / "s.jsonl")


def test_release_rule_on_the_real_corpus(shared_data, tmp_path):
    from jz3.config.enums import CorpusKind, SnippetRule

    cfg = SnippetConfig(corpus=[str(shared_data / "corpus" / "levin-discrete.jsonl")],
                        rule=SnippetRule.release, default_kind=CorpusKind.textbook, seed=0)
    stats = make_snippets(cfg, None, tmp_path / "snippets.jsonl")
    recs = list(read_records(tmp_path / "snippets.jsonl", RecordKind.snippet))
    docs = list(read_records(shared_data / "corpus" / "levin-discrete.jsonl", RecordKind.corpus))
    assert stats.written == len(recs) == len(docs)  # no `## ` headers: one head per document
    assert all(r["text"] == d["text"].strip()[:1000] for r, d in zip(recs, docs, strict=True))
