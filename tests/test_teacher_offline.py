"""The offline teacher and the KD builder end to end on the shipped data (no network)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

from jz3.config import compose
from jz3.data.records import RecordKind, read_records, write_jsonl
from jz3.data.snippets import make_snippets
from jz3.synth.parse import parse_completion
from jz3.teacher.kd import build_kd, make_backend, run_kd
from jz3.teacher.offline import ELEMENTARY, TOOL


@pytest.fixture(scope="module")
def kd_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("kd")
    st = compose(["+exp=tiny_kd", f"run_dir={run}",
                  "stages.snippets.snippets.max_snippets=90"]).stages
    snippets = run / "snippets" / "snippets.jsonl"
    make_snippets(st.snippets.snippets, st.snippets.mixture, snippets)
    tcfg = st.kd_seed.teacher
    backend = make_backend(tcfg)
    ids = [s["id"] for s in read_records(snippets, RecordKind.snippet)]
    res = run_kd(tcfg, snippets, run / "kd_seed", ids, backend=backend)
    return tcfg, run, snippets, backend, res


def test_offline_kd_set_is_valid_parseable_and_marked_offline(kd_run):
    cfg, run, snippets, backend, res = kd_run
    recs = list(read_records(res.kd, RecordKind.kd))
    assert res.kd == str(run / "kd_seed" / "kd.jsonl")
    assert res.written == len(recs) == 90 and res.rejected_count == 0
    assert all(r["model"].startswith("offline:") for r in recs)
    assert all(r["usage"]["estimated"] for r in recs)
    snips = {s["id"]: s for s in read_records(snippets, RecordKind.snippet)}
    for r in recs:
        p = parse_completion(r["completion"], r["prompt_type"])  # same parser as the synthesizer's
        assert (p.problem, p.solution, p.answer) == (r["problem"], r["solution"], r["answer"])
        assert snips[r["snippet_id"]]["text"] in r["prompt"]
        if r["prompt_type"] == "tool":
            assert p.code and "## Code Solution" in r["completion"]
        if r["prompt_type"] in ("grade_school", "middle_school"):
            assert r["model"] == "offline:gsm8k/train" or "$" not in r["problem"]
    assert len(Counter(r["prompt_type"] for r in recs)) == 9
    assert (res.requested, res.written, res.rejected_count) == (90, 90, 0)
    assert res.stats["budget"]["cost_usd"] == 0.0 and res.stats["journal"]["calls"] == 90
    assert json.loads(open(res.ids).read()) == [r["snippet_id"] for r in recs]


def test_offline_teacher_is_stage_aware_similar_and_deterministic(kd_run):
    _, _, _, backend, _ = kd_run
    from jz3.teacher.types import TeacherRequest

    tiers = Counter(it.tier for it in backend.items)
    assert tiers[ELEMENTARY] > 7000 and tiers[TOOL] > 300 and tiers["advanced"] > 100
    snippet = ("A farmer sells eggs at the market. Each carton holds 12 eggs and costs 3 dollars. "
               "On Monday she sold 14 cartons of eggs.")
    a = backend.pick(TeacherRequest("k1", "p", "grade_school", snippet))
    assert a.tier == ELEMENTARY and "egg" in (a.problem + a.solution).lower()
    assert backend.pick(TeacherRequest("k1", "p", "grade_school", snippet)) == a
    t = backend.pick(TeacherRequest("k2", "p", "tool", snippet))
    assert t.tier == TOOL and "```python" in t.solution
    hard = backend.pick(TeacherRequest("k3", "p", "aime", snippet))
    assert hard.tier != ELEMENTARY


def test_rerun_is_served_from_the_journal_and_ids_select_snippets(kd_run):
    cfg, run, snippets, backend, first = kd_run
    again = build_kd(cfg, snippets, run / "kd_seed", backend=backend, progress=False)
    assert again.usage["cached"] == 90 and again.usage["attempts"] == 0
    assert again.journal["calls"] == 90  # nothing new was called
    ids = [s["id"] for s in read_records(snippets, RecordKind.snippet)][10:15]
    boost = build_kd(cfg, snippets, run / "kd_boost", ids=ids + ["nope:0"], backend=backend,
                     progress=False)
    recs = list(read_records(run / "kd_boost" / "kd.jsonl", RecordKind.kd))
    assert [r["snippet_id"] for r in recs] == ids and boost.usage["cached"] == 5
    rej = [json.loads(x) for x in open(run / "kd_boost" / "rejected.jsonl")]
    assert [r["reason"].split(":")[0] for r in rej] == ["unknown_snippet_id"]
    limited = build_kd(cfg, snippets, run / "kd_limit", limit=7, backend=backend, progress=False)
    assert limited.written == 7


def test_unparseable_completions_go_to_rejected_with_reason(kd_run, tmp_path):
    cfg, run, _, _, _ = kd_run
    from jz3.teacher.types import TeacherResponse

    class Garbled:
        name, billable = "garbled", False

        async def send(self, req, params, timeout_s):
            return TeacherResponse(text="I cannot do that.", model="garbled")

        async def aclose(self):
            return None

    snip = tmp_path / "s.jsonl"
    write_jsonl(snip, [{"id": "d:0", "doc_id": "d", "text": "Some text about sets.",
                        "source": "x", "prompt_type": "college"}])
    cfg = dataclasses.replace(cfg, journal=str(tmp_path / "j.sqlite"))
    stats = build_kd(cfg, snip, tmp_path / "out", backend=Garbled(), progress=False)
    assert stats.written == 0 and stats.reasons == {"parse_missing_question": 1}
    rej = json.loads((tmp_path / "out" / "rejected.jsonl").read_text())
    assert rej["reason"].startswith("parse: missing_question") and rej["completion"]
