"""The run report reads each stage's typed result: numbers and curves come from the result and
the record files it names, and a field it reads that a manifest's result lacks is an error
naming the stage and the field (not an empty plot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jz3.provenance import jsonable, write_manifest
from jz3.teacher.kd import KDResult, TeacherCalls
from jz3.train.result import TrainResult

NAMES = ["kd_seed", "distill"]


def _stage(run: Path, name: str, result: object, drop: str = "") -> None:
    """The stage's manifest with its typed result; `drop`: a field path (`a.b.c`) left out."""
    raw = jsonable(result)
    *up, last = drop.split(".")
    parent = raw
    for k in up:
        parent = parent[k]
    parent.pop(last, None)
    t = type(result)
    write_manifest(run / name, name, "key", counts={"out": 1}, wall_s=1.0,
                   extra={"result": raw, "result_type": f"{t.__module__}:{t.__qualname__}"})


def _results(run: Path) -> tuple[KDResult, TrainResult]:
    out = run / "distill" / "out"
    out.mkdir(parents=True)
    log = out / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 2.0 / s, "lr": 1e-3}) + "\n"
                           for s in range(1, 6)))
    kd = KDResult(kd=str(run / "kd_seed/out/kd.jsonl"), rejected="r", ids="i", requested=20,
                  written=17, rejected_count=3,
                  calls=TeacherCalls(attempts=21, retries=1, journal_calls=21,
                                     journal_tokens=4321, journal_cost_usd=0.0123))
    tr = TrainResult(output_dir=str(out), hf_export_dir=None, final_loss=0.4321, steps=5,
                     log_file=str(log), checkpoint_dir=None, tokens_seen=777, preempted=False,
                     wall_s=1.0)
    return kd, tr


def test_report_reads_typed_results_and_their_log(tmp_path):
    from jz3.pipeline.report import write_report

    run = tmp_path / "run"
    kd, tr = _results(run)
    _stage(run, "kd_seed", kd)
    _stage(run, "distill", tr)
    text = write_report(run, NAMES, run / "r.md").read_text()
    assert "| kd_seed | 17 | 20 | 3 | 21 | 1 | 21 | 4321 | 0.0123 | 0 |" in text
    assert "| distill | 5 | 777 | 0.4321 |" in text
    assert (run / "report_plots" / "synth_loss.png").is_file()  # the curve from log_file


@pytest.mark.parametrize("stage, field", [("kd_seed", "calls"),  # defaulted in the dataclass
                                          ("distill", "final_loss"),  # required
                                          ("distill", "log_file")])
def test_report_names_the_stage_and_the_field_a_result_lacks(tmp_path, stage, field):
    from jz3.pipeline.report import ReportError, write_report

    run = tmp_path / "run"
    kd, tr = _results(run)
    _stage(run, "kd_seed", kd, drop=field if stage == "kd_seed" else "")
    _stage(run, "distill", tr, drop=field if stage == "distill" else "")
    with pytest.raises(ReportError) as e:
        write_report(run, NAMES, run / "r.md")
    assert repr(stage) in str(e.value) and field in str(e.value), str(e.value)
    assert not (run / "r.md").exists()
    # after a failed stage (its error is the one to see) the report error is only logged
    assert write_report(run, NAMES, run / "r.md", strict=False) is None


def _ablation():
    from jz3.ablation.results import AblationResult
    from jz3.ablation.verdict import Arm, BenchLoss, ItemLosses, ModelScore, compare_rows

    def row(arm, seed, x):
        return ModelScore(arm, seed, 64, 1, {"gsm8k": BenchLoss(x, 1.0, 40, 4)})

    rows = {"base": row(Arm.base, None, 7.0), "pretrain": row(Arm.synthetic, 0, 5.0),
            "pretrain_raw": row(Arm.raw, 0, 5.5)}
    rows["pretrain"].accuracy = {"gsm8k": {"cot": {"accuracy": 0.25, "n": 4}}}
    items = {"pretrain": {"gsm8k": ItemLosses([40.0, 60.0, 50.0, 50.0], [10] * 4)},
             "pretrain_raw": {"gsm8k": ItemLosses([45.0, 65.0, 55.0, 55.0], [10] * 4)}}
    return AblationResult("ablation.json", rows, compare_rows(rows, items))


def test_report_reads_the_typed_ablation_result(tmp_path):
    from jz3.pipeline.report import write_report

    run = tmp_path / "run"
    _stage(run, "ablation", _ablation())
    text = write_report(run, ["ablation"], run / "r.md").read_text()
    assert "| pretrain_raw | raw | 0 | gsm8k | 5.5 | 40 | 64 | 1 |" in text
    assert "| base | base | None | gsm8k | 7 | 40 | 64 | 1 |" in text
    assert 'Accuracy (pretrain): {"gsm8k": {"cot": {"accuracy": 0.25, "n": 4}}}' in text
    assert ("| gsm8k | 5.0000 (1) | 0.0000 | 5.5000 (1) | 0.0000 | +0.5000 | no verdict (one "
            "seed per arm: no spread measured) | [+0.5000, +0.5000] (1 x 4) | **synthetic "
            "better** |") in text


@pytest.mark.parametrize("field", ["rows.pretrain.loss.gsm8k.tokens",  # required
                                   "rows.pretrain.accuracy",  # defaulted in the dataclass
                                   "comparison.gsm8k.paired"])
def test_report_names_the_ablation_field_a_result_lacks(tmp_path, field):
    from jz3.pipeline.report import ReportError, write_report

    run = tmp_path / "run"
    _stage(run, "ablation", _ablation(), drop=field)
    with pytest.raises(ReportError) as e:
        write_report(run, ["ablation"], run / "r.md")
    assert "'ablation'" in str(e.value) and field.rsplit(".", 1)[-1] in str(e.value), str(e.value)
    assert field.rsplit(".", 1)[0] in str(e.value), str(e.value)
