"""`runs/<exp>/report.md` with PNG plots, built from the stage manifests (and a few outputs).

Sections: stage table (wall time, counts), teacher calls and cost, KD size, synthesizer loss,
influence scores and selected fraction, synthesis counts with reject reasons and
decontamination hits, the parse rate on snippets the teacher never saw, a few synthesized problems
per education stage next to their snippets and prompts, pretraining loss (synthetic vs raw
ablation), evaluation table (CoT and tool), and the ablation verdict (each arm's mean and seed
spread per benchmark). A stage that has not run is reported as missing, never faked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from jz3.config.enums import PromptType
from jz3.data.records import atomic_write_text
from jz3.provenance import read_manifest

log = logging.getLogger("jz3.pipeline.report")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _num(x: Any) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _read_jsonl(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _clip(text: str, n: int) -> str:
    text = str(text).strip()
    return text if len(text) <= n else text[:n].rstrip() + " …"


def _quote(text: str) -> List[str]:
    return ["> " + line if line.strip() else ">" for line in text.splitlines()]


EXAMPLES_PER_STAGE = 2
VERDICT_TEXT = {"synthetic_better": "**synthetic better**",
                "raw_better": "**raw better**",
                "inconclusive": "no difference (the 95% interval contains 0)",
                "within_spread": "no difference (within the seed spread)",
                "one_seed": "no verdict (one seed per arm: no spread measured)"}



def _interval(p: Any) -> str:
    if not p:
        return "not scored per item"
    return (f"[{p['low']:+.4f}, {p['high']:+.4f}] ({p['seed_pairs']} x {p['items']})")

class Report:
    def __init__(self, run_dir: Path, stage_names: Sequence[str],
                 disabled: Sequence[str] = ()):
        self.run_dir = Path(run_dir)
        self.plots = self.run_dir / "report_plots"
        self.m = {s: read_manifest(self.run_dir / s) for s in stage_names}
        self.disabled = set(disabled)
        self.lines: List[str] = []

    def metrics(self, stage: str) -> Dict[str, Any]:
        m = self.m.get(stage)
        return (m or {}).get("metrics", {})

    def result_path(self, stage: str, field: str) -> Optional[Path]:
        """A file named in a stage's typed result (absolute, or relative to the working dir
        or to the stage's `out/`)."""
        raw = ((self.m.get(stage) or {}).get("result") or {}).get(field)
        if not raw:
            return None
        p = Path(raw)
        for cand in (p, self.run_dir / stage / "out" / p.name):
            if cand.exists():
                return cand
        return None

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
                rows.append([s, "not finished", "", ""])
            else:
                rows.append([s, "done", m.get("wall_s"), json.dumps(m.get("counts", {}))])
        self.table(["stage", "status", "wall s", "counts"], rows)

    def teacher(self) -> None:
        self.add("## Teacher calls, cost and KD size", "")
        if self.missing("kd_seed"):
            return
        keys = ("kd_records", "requested", "rejected", "usage.attempts", "usage.retries",
                "journal.calls", "journal.tokens", "journal.cost", "budget.cost_usd")
        stages = [st for st in ("kd_seed", "kd_boost") if self.metrics(st)]
        flat = {st: _flatten(self.metrics(st)) for st in stages}
        self.table(["stage", *keys], [[st] + [flat[st].get(k, "") for k in keys]
                                      for st in stages])
        self.add("`journal.*` are the run's cumulative teacher totals (one journal per run: a "
                 "prompt is never paid twice); `usage.*` are this stage's HTTP attempts.", "")

        def sizes(ax):
            for i, k in enumerate(("kd_records", "rejected")):
                ax.bar([j + 0.4 * i for j in range(len(stages))],
                       [_num(flat[n].get(k)) or 0 for n in stages], width=0.4, label=k)
            ax.set_xticks([j + 0.2 for j in range(len(stages))], stages)
            ax.set_ylabel("records")
            ax.set_title("KD set size")
            ax.legend()

        def calls(ax):
            c = [_num(flat[n].get("journal.calls")) or 0 for n in stages]
            cost = [_num(flat[n].get("journal.cost")) or 0 for n in stages]
            ax.bar(stages, c, color="tab:blue")
            ax.set_ylabel("teacher calls (cumulative)")
            ax2 = ax.twinx()
            ax2.plot(stages, cost, "o-", color="tab:red")
            ax2.set_ylabel("cost USD (cumulative)")
            ax.set_title("Teacher calls and cost")

        self.figure("kd_size", sizes)
        self.figure("teacher_calls", calls)

    def curves(self, title: str, name: str, stages: Sequence[str]) -> None:
        self.add(f"## {title}", "")
        have = [s for s in stages if self.metrics(s).get("loss_curve")]
        rows = [[s, self.metrics(s).get("steps"), self.metrics(s).get("tokens"),
                 self.metrics(s).get("final_loss")] for s in stages if self.m.get(s)]
        if rows:
            self.table(["stage", "steps", "tokens", "final loss"], rows)
        if not have:
            self.missing(*[s for s in stages if self.m.get(s) is None] or stages[:1])
            return

        def draw(ax):
            for s in have:
                c = self.metrics(s)["loss_curve"]
                ax.plot([p[0] for p in c], [p[1] for p in c], label=s)
            ax.set_xlabel("step")
            ax.set_ylabel("train loss")
            ax.set_title(title)
            ax.legend()

        self.figure(name, draw)

    def influence(self) -> None:
        self.add("## Influence scores and selection", "")
        if self.missing("influence"):
            return
        mt = self.metrics("influence")
        self.add(f"Candidates: {mt.get('candidates')}, selected snippets: {mt.get('selected')} "
                 f"(fraction {_fmt(mt.get('selected_fraction'))}).", "")
        scores = mt.get("scores") or []
        if scores:
            k = int(mt.get("selected") or 0)
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
        sy, fi = self.metrics("synthesize"), self.metrics("filter")
        counts = {"snippets in": sy.get("snippets", sy.get("synth_in")), "parsed": sy.get("synth_out"),
                  "synth rejected": sy.get("synth_rejected")}
        if fi:
            counts["kept after filter"] = sum((fi.get("kept_by_source") or {}).values())
            counts["filter rejected"] = (self.m["filter"] or {}).get("counts", {}).get("rejected")
        self.table(["count", "value"], list(counts.items()))
        reasons: Dict[str, int] = {}
        for src in (sy, fi):
            for k, v in (src.get("reject_reasons") or {}).items():
                reasons[k] = reasons.get(k, 0) + v
        decontam = {k: v for k, v in _flatten(fi).items() if "decontam" in k and _num(v) is not None}
        if reasons:
            self.table(["reject reason", "records"], sorted(reasons.items(), key=lambda x: -x[1]))
        self.add("Decontamination hits: " + (json.dumps(decontam) if decontam else
                                             "none reported"), "")

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
        p = self.result_path("snippets", "snippets")
        return {r["id"]: r for r in _read_jsonl(p)} if p else {}

    def _kd_ids(self) -> set:
        ids: set = set()
        for st in ("kd_seed", "kd_boost"):
            p = self.result_path(st, "ids")
            if p:
                ids.update(json.loads(p.read_text("utf-8")))
        return ids

    def parse_rate(self) -> None:
        """Parsed / written, overall and on snippets the teacher never answered (the honest
        figure: a synthesizer may have memorised its KD examples)."""
        ok_p, rej_p = self.result_path("synthesize", "records"), \
            self.result_path("synthesize", "rejected")
        if ok_p is None:
            return
        ok, rej, kd = _read_jsonl(ok_p), _read_jsonl(rej_p) if rej_p else [], self._kd_ids()
        rows = []
        for name, keep in (("all snippets", lambda i: True),
                           ("snippets not in the KD set (held out)", lambda i: i not in kd),
                           ("snippets in the KD set", lambda i: i in kd)):
            n_ok = sum(keep(r["snippet_id"]) for r in ok)
            n = n_ok + sum(keep(r.get("snippet_id")) for r in rej)
            rows.append([name, n, n_ok, f"{100 * n_ok / n:.1f}%" if n else "-"])
        self.add("### Parse rate", "")
        self.table(["synthesizer inputs", "written", "parsed", "parse rate"], rows)

    def examples(self) -> None:
        """A few synthesized problems per education stage, next to their snippet and prompt."""
        ok_p, rej_p = self.result_path("synthesize", "records"), \
            self.result_path("synthesize", "rejected")
        if ok_p is None:
            return
        snips, kd = self._snippets(), self._kd_ids()
        by_stage: Dict[str, List[Dict[str, Any]]] = {}
        for r in _read_jsonl(ok_p):
            if r["snippet_id"] not in kd:  # held-out snippets first
                by_stage.setdefault(r["prompt_type"], []).append(r)
        for r in _read_jsonl(ok_p):
            if r["snippet_id"] in kd:
                by_stage.setdefault(r["prompt_type"], []).append(r)
        rejected = _read_jsonl(rej_p) if rej_p else []
        self.add("### Synthesized problems per education stage", "",
                 f"Up to {EXAMPLES_PER_STAGE} parsed outputs per stage (snippets outside the KD "
                 "set first), each under the snippet its prompt carried; a stage with no parsed "
                 "output shows a rejected one with its reason.", "")
        order = {p.value: i for i, p in enumerate(PromptType)}
        stages = sorted({sn.get("prompt_type") for sn in snips.values()} | set(by_stage),
                        key=lambda x: (order.get(str(x), len(order)), str(x)))
        for stage in stages:
            picks = by_stage.get(stage, [])[:EXAMPLES_PER_STAGE]
            bad = [] if picks else [r for r in rejected
                                    if snips.get(r.get("snippet_id"), {}).get("prompt_type")
                                    == stage][:1]
            self.add(f"#### {stage}", "")
            if not picks and not bad:
                self.add("_No output for this stage._", "")
            for r in picks + bad:
                sid = r.get("snippet_id")
                sn = snips.get(sid, {})
                held = "held out" if sid not in kd else "in the KD set"
                self.add(f"Snippet `{sid}` ({held}):", "", *_quote(_clip(sn.get("text", ""), 400)),
                         "")
                if r.get("prompt"):
                    self.add("<details><summary>prompt</summary>", "", "```text",
                             _clip(r["prompt"], 3000), "```", "</details>", "")
                label = "Synthesized" if r in picks else f"Rejected ({r.get('reason', '')})"
                self.add(f"{label}:", "", "```text", _clip(r.get("completion", ""), 900), "```",
                         "")

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
        ev = self.metrics("evaluate").get("eval", {})
        settings = sorted({st for per in ev.values() if isinstance(per, dict) for st in per})
        rows = []
        for bench, per in ev.items():
            if not isinstance(per, dict):
                continue
            row = [bench]
            for st in settings:
                m = per.get(st) or {}
                acc, n = m.get("accuracy"), m.get("n")
                row.append(f"{100 * acc:.1f}% (n={int(n)})" if _num(acc) is not None else "")
            rows.append(row)
        self.table(["benchmark", *settings], rows)

    def ablation(self) -> None:
        self.add("## Ablation: synthetic data vs raw snippets (same token budget)", "")
        if self.missing("ablation"):
            return
        mt = self.metrics("ablation")
        ab, comp = mt.get("ablation", {}), mt.get("comparison") or {}
        rows = []
        for model, r in ab.items():
            for bench, v in (r.get("loss") or {}).items():
                rows.append([model, r.get("arm", ""), r.get("seed", ""), bench,
                             v.get("loss_per_token"), v.get("tokens"), r.get("tokens"),
                             r.get("steps")])
        self.table(["model", "pretrained on", "seed", "benchmark", "loss/token",
                    "scored tokens", "train tokens", "steps"], rows)
        for model, r in ab.items():
            acc = {k: v for k, v in _flatten(r.get("accuracy") or {}).items() if _num(v)}
            if acc:
                self.add(f"Accuracy ({model}): {json.dumps(acc)}", "")
        if comp:
            self.add("Reference-solution loss in nats/token (lower is better); spread = max - "
                     "min over an arm's seeds (spread rule: |gap| > the larger spread). The "
                     "verdict is the paired bootstrap: a 95% interval of the gap over benchmark "
                     "items and seed pairs resampled together; it must exclude 0.", "")
            self.table(["benchmark", "synthetic mean (seeds)", "synthetic spread",
                        "raw mean (seeds)", "raw spread", "gap raw - synthetic", "spread rule",
                        "paired 95% interval (seed pairs x items)", "verdict"],
                       [[b, f"{c['synthetic_mean']:.4f} ({len(c['synthetic'])})",
                         f"{c['synthetic_spread']:.4f}", f"{c['raw_mean']:.4f} ({len(c['raw'])})",
                         f"{c['raw_spread']:.4f}", f"{c['gap']:+.4f}",
                         VERDICT_TEXT.get(c["spread_verdict"], c["spread_verdict"]),
                         _interval(c.get("paired")),
                         VERDICT_TEXT.get(c["verdict"], c["verdict"])] for b, c in comp.items()])
            return
        syn = ab.get("pretrain", {}).get("loss", {})
        raw = ab.get("pretrain_raw", {}).get("loss", {})
        for b in syn:
            if b in raw:
                d = raw[b]["loss_per_token"] - syn[b]["loss_per_token"]
                verdict = "lower (better) with synthetic data" if d > 0 else \
                    "NOT lower with synthetic data"
                self.add(f"- {b}: loss/token {syn[b]['loss_per_token']:.4f} (synthetic) vs "
                         f"{raw[b]['loss_per_token']:.4f} (raw): {verdict} (delta {d:+.4f}).")
        self.add("")

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
                 title: str = "jz3 run report", disabled: Sequence[str] = ()) -> Path:
    """Write the markdown report (atomically) and its PNGs; returns the report path.
    `disabled`: stages the experiment turns off (reported as such, not as unfinished)."""
    text = Report(Path(run_dir), stage_names, disabled).build(title)
    atomic_write_text(out, text)
    log.info("report written to %s", out)
    return Path(out)
