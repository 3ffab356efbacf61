"""`runs/<exp>/report.md` with PNG plots, built from the stages' typed results.

Sections: stage table (wall time, counts), teacher calls and cost, KD size, synthesizer loss,
influence scores and selected fraction, synthesis counts with reject reasons and
decontamination hits, the parse rate on snippets the teacher never saw, a few synthesized problems
per education stage next to their snippets and prompts, pretraining loss (synthetic vs raw
ablation), evaluation table (CoT and tool), and the ablation verdict (each arm's mean and seed
spread per benchmark).

Each finished stage is read through its manifest's typed result (`StageOutput.result`) and the
record files that result names (the trainer's log for loss curves, the synthesizer's records,
the influence scores). A field the report reads that the result does not carry, or a file it
names that is not there, raises `ReportError` naming the stage and the field: a renamed field
fails the report rather than emptying a plot. A stage that has not run (disabled, or not
finished) is reported as such, never faked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from jz3.ablation.verdict import Verdict
from jz3.config.enums import PromptType
from jz3.data.records import atomic_write_text
from jz3.pipeline.runner import StageOutput
from jz3.provenance import read_manifest

log = logging.getLogger("jz3.pipeline.report")


class ReportError(RuntimeError):
    """A finished stage's result lacks what the report reads (it ran other code: rerun it)."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _clip(text: str, n: int) -> str:
    text = str(text).strip()
    return text if len(text) <= n else text[:n].rstrip() + " …"


def _quote(text: str) -> List[str]:
    return ["> " + line if line.strip() else ">" for line in text.splitlines()]


EXAMPLES_PER_STAGE = 2
VERDICT_TEXT = {Verdict.synthetic_better: "**synthetic better**",
                Verdict.raw_better: "**raw better**",
                Verdict.inconclusive: "no difference (the 95% interval contains 0)",
                Verdict.within_spread: "no difference (within the seed spread)",
                Verdict.one_seed: "no verdict (one seed per arm: no spread measured)"}


class Fields:
    """A stage's typed result (or a dataclass inside it, also the values of a dict of them),
    read by attribute: a field the manifest's result does not carry is a `ReportError` naming the stage and the field (also a
    field whose dataclass default would otherwise stand in for it)."""

    def __init__(self, stage: str, value: Any, raw: Dict[str, Any], path: str = ""):
        self._stage, self._value, self._raw, self._path = stage, value, raw, path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        where = f"{self._path}{name}"
        if name not in self._raw or not hasattr(self._value, name):
            raise ReportError(f"report: stage {self._stage!r}: its result "
                              f"({type(self._value).__name__}) has no field {where!r}; the "
                              "stage ran other code: rerun it")
        v, raw = getattr(self._value, name), self._raw[name]
        if dataclasses.is_dataclass(v) and isinstance(raw, dict):
            return Fields(self._stage, v, raw, f"{where}.")
        if isinstance(v, dict) and isinstance(raw, dict) and v \
                and all(dataclasses.is_dataclass(x) for x in v.values()):  # Dict[str, Dataclass]
            return {k: Fields(self._stage, x, raw[k], f"{where}.{k}.") for k, x in v.items()}
        return v


def need(r: Fields, d: Any, *keys: Any, field: str = "") -> Any:
    """`d[k1][k2]...` of a dict inside the result `r`; a missing key raises naming the stage
    and the path (`field`: where `d` lies in the result)."""
    cur = d
    for i, k in enumerate(keys):
        if not isinstance(cur, dict) or k not in cur:
            path = ".".join(str(x) for x in keys[: i + 1])
            raise ReportError(f"report: stage {r._stage!r}: its result has no "
                              f"{field + '.' if field else ''}{path}; the stage ran other "
                              "code: rerun it")
        cur = cur[k]
    return cur


def records(r: Fields, name: str) -> List[Dict[str, Any]]:
    """The JSON lines of the record file named by the result's field `name`."""
    p = Path(getattr(r, name))
    if not p.is_file():
        raise ReportError(f"report: stage {r._stage!r}: {name} = {p} is not a file")
    with open(p, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_result(run_dir: Path, stage: str) -> tuple[Optional[Dict[str, Any]], Optional[Fields]]:
    """A stage's manifest and typed result (None, None: the stage has not finished)."""
    d = Path(run_dir) / stage
    m = read_manifest(d)
    if m is None:
        return None, None
    try:
        res = StageOutput(stage, d, m).result
    except (ImportError, AttributeError) as e:
        raise ReportError(f"report: stage {stage!r}: its manifest's result type "
                          f"{m.get('result_type')!r} does not exist in this code ({e}); rerun "
                          "the stage") from e
    except (KeyError, TypeError, ValueError) as e:
        raise ReportError(f"report: stage {stage!r}: {e}") from e
    return m, Fields(stage, res, m["result"])


class Report:
    def __init__(self, run_dir: Path, stage_names: Sequence[str],
                 disabled: Sequence[str] = ()):
        self.run_dir = Path(run_dir)
        self.plots = self.run_dir / "report_plots"
        loaded = {s: load_result(self.run_dir, s) for s in stage_names}
        self.m = {s: m for s, (m, _) in loaded.items()}
        self.r = {s: r for s, (_, r) in loaded.items() if r is not None}
        self.disabled = set(disabled)
        self.lines: List[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def missing(self, *stages: str) -> bool:
        gone = [s for s in stages if self.m.get(s) is None]
        off = [s for s in gone if s in self.disabled]
        unfinished = [s for s in gone if s not in self.disabled]
        if off:
            self.add(f"_Not run: stage(s) {', '.join(off)} disabled in this experiment._", "")
        if unfinished:
            self.add(f"_Not available: stage(s) {', '.join(unfinished)} have not finished._", "")
        return bool(gone)

    def figure(self, name: str, draw) -> None:
        plt = _plt()
        self.plots.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        try:
            draw(ax)
            fig.tight_layout()
            fig.savefig(self.plots / f"{name}.png", dpi=90)
        finally:
            plt.close(fig)
        self.add(f"![{name}](report_plots/{name}.png)", "")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        for r in rows:
            self.add("| " + " | ".join(_fmt(x) for x in r) + " |")
        self.add("")

    # ------------------------------------------------------------------ sections
    def stages(self) -> None:
        self.add("## Stages", "")
        rows = []
        for s, m in self.m.items():
            if m is None:
                rows.append([s, "disabled" if s in self.disabled else "not finished", "", ""])
            else:
                rows.append([s, "done", m["wall_s"], json.dumps(m["counts"])])
        self.table(["stage", "status", "wall s", "counts"], rows)

    def teacher(self) -> None:
        self.add("## Teacher calls, cost and KD size", "")
        if self.missing("kd_seed"):
            return
        stages = [st for st in ("kd_seed", "kd_boost") if st in self.r]
        kd = {st: self.r[st] for st in stages}
        calls = {st: kd[st].calls for st in stages}
        self.table(["stage", "kd records", "requested", "rejected", "attempts", "retries",
                    "journal calls", "journal tokens", "journal cost USD", "budget cost USD"],
                   [[st, kd[st].written, kd[st].requested, kd[st].rejected_count,
                     calls[st].attempts, calls[st].retries, calls[st].journal_calls,
                     calls[st].journal_tokens, calls[st].journal_cost_usd,
                     calls[st].budget_cost_usd] for st in stages])
        self.add("The journal columns are the run's cumulative teacher totals (one journal per run: a "
                 "prompt is never paid twice); attempts and retries are this stage's.", "")

        def sizes(ax):
            for i, (label, vals) in enumerate(
                    (("kd records", [kd[n].written for n in stages]),
                     ("rejected", [kd[n].rejected_count for n in stages]))):
                ax.bar([j + 0.4 * i for j in range(len(stages))], vals, width=0.4, label=label)
            ax.set_xticks([j + 0.2 for j in range(len(stages))], stages)
            ax.set_ylabel("records")
            ax.set_title("KD set size")
            ax.legend()

        def traffic(ax):
            ax.bar(stages, [calls[n].journal_calls for n in stages], color="tab:blue")
            ax.set_ylabel("teacher calls (cumulative)")
            ax2 = ax.twinx()
            ax2.plot(stages, [calls[n].journal_cost_usd for n in stages], "o-", color="tab:red")
            ax2.set_ylabel("cost USD (cumulative)")
            ax.set_title("Teacher calls and cost")

        self.figure("kd_size", sizes)
        self.figure("teacher_calls", traffic)

    def loss_curve(self, stage: str) -> List[List[float]]:
        """[[step, loss], ...] from the trainer's JSONL log named by the stage's `log_file`."""
        return [[float(r["step"]), float(r["loss"])] for r in records(self.r[stage], "log_file")
                if "loss" in r and "step" in r]

    def curves(self, title: str, name: str, stages: Sequence[str]) -> None:
        self.add(f"## {title}", "")
        done = [s for s in stages if s in self.r]
        if done:
            self.table(["stage", "steps", "tokens", "final loss"],
                       [[s, self.r[s].steps, self.r[s].tokens_seen, self.r[s].final_loss]
                        for s in done])
        curves = {s: self.loss_curve(s) for s in done}
        have = [s for s in done if curves[s]]
        if not have:
            if not self.missing(*[s for s in stages if s not in self.r] or stages[:1]):
                self.add("_No loss logged (fewer steps than `trainer.log_every`)._", "")
            return

        def draw(ax):
            for s in have:
                ax.plot([p[0] for p in curves[s]], [p[1] for p in curves[s]], label=s)
            ax.set_xlabel("step")
            ax.set_ylabel("train loss")
            ax.set_title(title)
            ax.legend()

        self.figure(name, draw)

    def influence(self) -> None:
        self.add("## Influence scores and selection", "")
        if self.missing("influence"):
            return
        r = self.r["influence"]
        candidates, selected = int(need(r, r.counts, "candidates", field="counts")), r.selected
        self.add(f"Candidates: {candidates}, selected snippets: {selected} "
                 f"(fraction {_fmt(selected / max(candidates, 1))}).", "")
        scores = [float(x["score"]) for x in records(r, "scores")]
        if scores:
            k = int(selected)
            thr = sorted(scores, reverse=True)[k - 1] if 0 < k <= len(scores) else None

            def draw(ax):
                ax.hist(scores, bins=40)
                if thr is not None:
                    ax.axvline(thr, color="r", label=f"selection threshold (top {k})")
                    ax.legend()
                ax.set_xlabel("influence score")
                ax.set_ylabel("candidates")
                ax.set_title("Influence score distribution")

            self.figure("influence_scores", draw)

    def synthesis(self) -> None:
        self.add("## Synthesis, filtering and decontamination", "")
        if self.missing("synthesize"):
            return
        sy, fi = self.r["synthesize"], self.r.get("filter")
        reasons: Dict[str, int] = dict(sy.reasons)
        counts: Dict[str, Any] = {"snippets in": sy.snippets, "parsed": sy.ok,
                                  "synth rejected": sum(sy.reasons.values())}
        decontam: Optional[Dict[str, int]] = None
        if fi is not None:
            counts["kept after filter"] = sum(fi.kept_by_kind.values())
            counts["filter rejected"] = sum(fi.reasons.values())
            for k, v in fi.reasons.items():
                reasons[k] = reasons.get(k, 0) + v
            decontam = fi.decontam_hits
        self.table(["count", "value"], list(counts.items()))
        if reasons:
            self.table(["reject reason", "records"], sorted(reasons.items(), key=lambda x: -x[1]))
        self.add("Decontamination hits (records dropped, per benchmark): " + (
            "filter not run" if decontam is None else json.dumps(decontam) if decontam
            else "no benchmark configured"), "")

        def draw(ax):
            items = sorted(reasons.items(), key=lambda x: -x[1])[:12]
            ax.barh([k for k, _ in items], [v for _, v in items])
            ax.set_xlabel("records")
            ax.set_title("Synthesis reject reasons")

        if reasons:
            self.figure("reject_reasons", draw)
        self.parse_rate()
        self.examples()

    def _snippets(self) -> Dict[str, Dict[str, Any]]:
        if "snippets" not in self.r:
            return {}
        return {r["id"]: r for r in records(self.r["snippets"], "snippets")}

    def _kd_ids(self) -> set:
        ids: set = set()
        for st in ("kd_seed", "kd_boost"):
            if st in self.r:
                p = Path(self.r[st].ids)
                if not p.is_file():
                    raise ReportError(f"report: stage {st!r}: ids = {p} is not a file")
                ids.update(json.loads(p.read_text("utf-8")))
        return ids

    def parse_rate(self) -> None:
        """Parsed / written, overall and on snippets the teacher never answered (the honest
        figure: a synthesizer may have memorised its KD examples)."""
        sy = self.r["synthesize"]
        ok, rej, kd = records(sy, "records"), records(sy, "rejected"), self._kd_ids()
        rows = []
        for name, keep in (("all snippets", lambda i: True),
                           ("snippets not in the KD set (held out)", lambda i: i not in kd),
                           ("snippets in the KD set", lambda i: i in kd)):
            n_ok = sum(keep(r["snippet_id"]) for r in ok)
            n = n_ok + sum(keep(r["snippet_id"]) for r in rej)
            rows.append([name, n, n_ok, f"{100 * n_ok / n:.1f}%" if n else "-"])
        self.add("### Parse rate", "")
        self.table(["synthesizer inputs", "written", "parsed", "parse rate"], rows)

    def examples(self) -> None:
        """A few synthesized problems per education stage, next to their snippet and prompt."""
        sy = self.r["synthesize"]
        ok = records(sy, "records")
        snips, kd = self._snippets(), self._kd_ids()
        by_stage: Dict[str, List[Dict[str, Any]]] = {}
        for held_out in (True, False):  # held-out snippets first
            for r in ok:
                if (r["snippet_id"] not in kd) == held_out:
                    by_stage.setdefault(r["prompt_type"], []).append(r)
        rejected = records(sy, "rejected")
        self.add("### Synthesized problems per education stage", "",
                 f"Up to {EXAMPLES_PER_STAGE} parsed outputs per stage (snippets outside the KD "
                 "set first), each under the snippet its prompt carried; a stage with no parsed "
                 "output shows a rejected one with its reason.", "")
        order = {p.value: i for i, p in enumerate(PromptType)}
        stages = sorted({sn["prompt_type"] for sn in snips.values()} | set(by_stage),
                        key=lambda x: (order.get(str(x), len(order)), str(x)))
        for stage in stages:
            picks = by_stage.get(stage, [])[:EXAMPLES_PER_STAGE]
            bad = [] if picks else [r for r in rejected
                                    if snips.get(r["snippet_id"], {}).get("prompt_type")
                                    == stage][:1]
            self.add(f"#### {stage}", "")
            if not picks and not bad:
                self.add("_No output for this stage._", "")
            for r in picks + bad:
                sid = r["snippet_id"]
                sn = snips.get(sid, {})
                held = "held out" if sid not in kd else "in the KD set"
                self.add(f"Snippet `{sid}` ({held}):", "", *_quote(_clip(sn.get("text", ""), 400)),
                         "")
                if r.get("prompt"):
                    self.add("<details><summary>prompt</summary>", "", "```text",
                             _clip(r["prompt"], 3000), "```", "</details>", "")
                label = "Synthesized" if r in picks else f"Rejected ({r['reason']})"
                self.add(f"{label}:", "", "```text", _clip(r.get("completion") or "", 900),
                         "```", "")

    def sft(self) -> None:
        if "sft" in self.disabled:
            self.add("## SFT loss", "", "_No separate SFT stage in this experiment: the SFT data, "
                     "if any, is the tail of the pretraining run (`stages.pretrain.data."
                     "tail_sources`); see the pretraining loss above._", "")
            return
        self.curves("SFT loss", "sft_loss", ["sft"])

    def evaluation(self) -> None:
        which = "pretrained model" if "sft" in self.disabled else "SFT model"
        self.add(f"## Evaluation ({which})", "")
        if self.missing("evaluate"):
            return
        r = self.r["evaluate"]
        ev = r.metrics
        settings = sorted({st for per in ev.values() for st in per})
        rows = []
        for bench, per in ev.items():
            row = [bench]
            for st in settings:
                if st not in per:
                    row.append("")
                elif "status" in per[st]:  # an optional benchmark whose file is absent
                    row.append(str(per[st]["status"]))
                else:
                    acc = float(need(r, ev, bench, st, "accuracy", field="metrics"))
                    n = int(need(r, ev, bench, st, "n", field="metrics"))
                    row.append(f"{100 * acc:.1f}% (n={n})")
            rows.append(row)
        self.table(["benchmark", *settings], rows)

    def ablation(self) -> None:
        self.add("## Ablation: synthetic data vs raw snippets (same token budget)", "")
        if self.missing("ablation"):
            return
        r = self.r["ablation"]
        ab, comp = r.rows, r.comparison
        rows = []
        for model, row in ab.items():
            for bench, v in row.loss.items():
                rows.append([model, row.arm.value, row.seed, bench, v.loss_per_token, v.tokens,
                             row.tokens, row.steps])
        self.table(["model", "pretrained on", "seed", "benchmark", "loss/token",
                    "scored tokens", "train tokens", "steps"], rows)
        for model, row in ab.items():
            if row.accuracy:  # only with `loss_eval.accuracy_limit` > 0
                self.add(f"Accuracy ({model}): {json.dumps(row.accuracy)}", "")
        if not comp:
            self.add("_No benchmark was scored in both arms: no comparison._", "")
            return
        self.add("Reference-solution loss in nats/token (lower is better); spread = max - "
                 "min over an arm's seeds (spread rule: |gap| > the larger spread). The "
                 "verdict is the paired bootstrap: a 95% interval of the gap over benchmark "
                 "items and seed pairs resampled together; it must exclude 0.", "")
        table = []
        for b, c in comp.items():
            paired = c.paired
            verdict = paired.verdict if paired is not None else c.spread_verdict
            table.append([b, f"{c.synthetic_mean:.4f} ({len(c.synthetic)})",
                          f"{c.synthetic_spread:.4f}",
                          f"{c.raw_mean:.4f} ({len(c.raw)})", f"{c.raw_spread:.4f}",
                          f"{c.gap:+.4f}", VERDICT_TEXT[c.spread_verdict],
                          self._interval(paired), VERDICT_TEXT[verdict]])
        self.table(["benchmark", "synthetic mean (seeds)", "synthetic spread",
                    "raw mean (seeds)", "raw spread", "gap raw - synthetic", "spread rule",
                    "paired 95% interval (seed pairs x items)", "verdict"], table)

    @staticmethod
    def _interval(p: Optional[Fields]) -> str:
        if p is None:
            return "not scored per item"
        return f"[{p.low:+.4f}, {p.high:+.4f}] ({p.seed_pairs} x {p.items})"

    def build(self, title: str) -> str:
        self.add(f"# {title}", "")
        self.stages()
        self.teacher()
        self.curves("Synthesizer training loss", "synth_loss", ["distill", "distill_boost"])
        self.influence()
        self.synthesis()
        self.curves("Pretraining loss", "pretrain_loss", ["pretrain", "pretrain_raw"])
        self.sft()
        self.evaluation()
        self.ablation()
        return "\n".join(self.lines) + "\n"


def write_report(run_dir: str | Path, stage_names: Sequence[str], out: str | Path,
                 title: str = "jz3 run report", disabled: Sequence[str] = (),
                 strict: bool = True) -> Optional[Path]:
    """Write the markdown report (atomically) and its PNGs; returns the report path.
    `disabled`: stages the experiment turns off (reported as such, not as unfinished).
    A `ReportError` is raised; with `strict=False` (a stage has failed, and its error is the one
    to see) it is logged and no report is written (None)."""
    try:
        text = Report(Path(run_dir), stage_names, disabled).build(title)
    except ReportError as e:
        if strict:
            raise
        log.error("no report: %s", e)
        return None
    atomic_write_text(out, text)
    log.info("report written to %s", out)
    return Path(out)
