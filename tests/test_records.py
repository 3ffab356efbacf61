"""Record IO: every bad-input case names file, line and field; quarantine keeps going and counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jz3.config.enums import OnError
from jz3.data.records import (
    AtomicJsonlWriter,
    IOStats,
    Quarantine,
    RecordError,
    RecordKind,
    read_records,
    shard_from_env,
    shard_name,
    write_jsonl,
    write_parquet,
)

GOOD = {"id": "d1", "text": "Some algebra.", "source": "openstax"}


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _bad_file(tmp_path: Path, bad_line: bytes) -> Path:
    """A corpus file whose line 2 is bad, lines 1 and 3 are good."""
    good = json.dumps(GOOD).encode()
    return _write_lines(tmp_path / "corpus.jsonl", [good, bad_line, good])


BAD_CASES = [
    ("malformed_json", b'{"id": "d2", "text": "x", ', None, "malformed JSON"),
    ("missing_field", json.dumps({"id": "d2", "source": "s"}).encode(), "text", "missing"),
    ("mistyped_field", json.dumps({"id": "d2", "text": 7, "source": "s"}).encode(), "text",
     "expected string, got int"),
    ("bool_for_string", json.dumps({"id": True, "text": "t", "source": "s"}).encode(), "id",
     "got bool"),
    ("invalid_utf8", b'{"id": "d2", "text": "caf\xe9", "source": "s"}', None, "invalid UTF-8"),
    ("empty_text", json.dumps({"id": "d2", "text": "  \n", "source": "s"}).encode(), "text",
     "empty text"),
    ("not_an_object", b"[1, 2]", None, "expected a JSON object"),
]


@pytest.mark.parametrize("name,line,field,reason", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_raises_with_file_line_field(tmp_path, name, line, field, reason):
    path = _bad_file(tmp_path, line)
    got = []
    with pytest.raises(RecordError) as ei:
        for r in read_records(path, kind=RecordKind.corpus):
            got.append(r)
    err = ei.value
    assert len(got) == 1  # the good first line came through before the error
    assert err.file == str(path) and err.line == 2 and err.field == field
    msg = str(err)
    assert f"{path}:2:" in msg and reason in msg
    if field:
        assert f"field '{field}'" in msg


@pytest.mark.parametrize("name,line,field,reason", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_quarantine_keeps_going_with_counts(tmp_path, name, line, field, reason):
    path = _bad_file(tmp_path, line)
    stats = IOStats()
    with Quarantine(tmp_path / "out" / "rejected.jsonl") as q:
        got = list(read_records(path, kind=RecordKind.corpus, on_error=OnError.quarantine,
                                quarantine=q, stats=stats))
    assert len(got) == 2 and stats.read == 3 and stats.ok == 2 and stats.rejected == 1
    assert sum(stats.reasons.values()) == 1
    rows = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["file"] == str(path) and rows[0]["line"] == 2 and rows[0]["field"] == field
    assert reason in rows[0]["reason"]
    assert rows[0]["record"] is not None  # the bad record itself is kept


def test_nonexistent_file_and_empty_glob(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(RecordError, match="nope.jsonl: file does not exist"):
        list(read_records(missing))
    with pytest.raises(RecordError, match="no file matches"):
        list(read_records(str(tmp_path / "*.jsonl")))


def test_quarantine_requires_a_sink(tmp_path):
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps(GOOD).encode()])
    with pytest.raises(ValueError, match="needs a Quarantine"):
        list(read_records(path, on_error=OnError.quarantine))


def test_many_bad_lines_counted_by_reason(tmp_path):
    lines = [json.dumps(GOOD).encode()] * 5 + [b"{oops"] * 3 + [json.dumps({"id": "x"}).encode()] * 2
    path = _write_lines(tmp_path / "c.jsonl", lines + [b""])  # a blank line is not a record
    stats = IOStats()
    with Quarantine(tmp_path / "rejected.jsonl") as q:
        got = list(read_records(path, RecordKind.corpus, OnError.quarantine, q, stats))
    assert len(got) == 5
    assert stats.as_dict()["read"] == 10 and stats.rejected == 5 and q.count == 5
    assert stats.reasons == {"malformed JSON": 3, "missing": 2}


def test_record_kinds(tmp_path):
    kd = {"id": "k1", "snippet_id": "s1", "prompt_type": "grade_school", "prompt": "p",
          "completion": "c", "problem": "q", "solution": "s", "model": "gpt-4"}
    write_jsonl(tmp_path / "kd.jsonl", [kd, {**kd, "answer": 3}])
    with pytest.raises(RecordError, match=r"kd.jsonl:2: field 'answer': expected string or null"):
        list(read_records(tmp_path / "kd.jsonl", RecordKind.kd))
    write_jsonl(tmp_path / "t.jsonl", [{"input": "", "output": "o"}, {"text": "t"}, {"input": "i"}])
    with pytest.raises(RecordError, match=r"t.jsonl:3: field 'output': missing"):
        list(read_records(tmp_path / "t.jsonl", RecordKind.train))
    write_jsonl(tmp_path / "e.jsonl", [{"prompt": "p", "completion": "c"}, {"prompt": "p",
                                                                            "completion": ""}])
    with pytest.raises(RecordError, match=r"e.jsonl:2: field 'completion': empty text"):
        list(read_records(tmp_path / "e.jsonl", RecordKind.example))
    pred = {"benchmark": "gsm8k", "idx": 1, "question": "q", "gold": "2", "output": "o",
            "pred": None, "correct": "yes"}
    write_jsonl(tmp_path / "p.jsonl", [pred])
    with pytest.raises(RecordError, match=r"p.jsonl:1: field 'correct': expected bool"):
        list(read_records(tmp_path / "p.jsonl", RecordKind.prediction))


def test_parquet_and_folder_of_shards(tmp_path):
    rows = [{**GOOD, "id": f"d{i}"} for i in range(6)]
    write_jsonl(tmp_path / "shards" / shard_name(0, 2), rows[:3])
    write_parquet(tmp_path / "shards" / shard_name(1, 2, ".parquet"), rows[3:])
    (tmp_path / "shards" / "rejected.jsonl").write_text('{"reason": "x"}\n')  # never re-read
    got = list(read_records(tmp_path / "shards", RecordKind.corpus))
    assert [r["id"] for r in got] == [f"d{i}" for i in range(6)]
    write_parquet(tmp_path / "bad.parquet", [{"id": "a", "text": "", "source": "s"}])
    with pytest.raises(RecordError, match=r"bad.parquet:1: field 'text': empty text"):
        list(read_records(tmp_path / "bad.parquet", RecordKind.corpus))


def test_atomic_writer_commits_only_on_clean_close(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with AtomicJsonlWriter(target) as w:
            w.write(GOOD)
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert write_jsonl(target, [GOOD, GOOD]) == 2
    assert [r["id"] for r in read_records(target, RecordKind.corpus)] == ["d1", "d1"]


def test_shard_names(monkeypatch):
    assert shard_name(3, 16) == "part-00003-of-00016.jsonl"
    with pytest.raises(ValueError):
        shard_name(16, 16)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    assert shard_from_env(None, None) == (5, 8)
    assert shard_from_env(2, 4) == (2, 4)
    # Rerunning one task of a 64-way array (`--array=17`): the task id is the shard.
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "17")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "1")
    assert shard_from_env(None, 64) == (17, 64)
    with pytest.raises(ValueError, match="num_shards"):
        shard_from_env(None, None)
