"""`runs/<exp>/report.md` with PNG plots, built from the stage manifests (and a few outputs).

Sections: stage table (wall time, counts), teacher calls and cost, KD size, synthesizer loss,
influence scores and selected fraction, synthesis counts with reject reasons and
decontamination hits, pretraining loss (synthetic vs raw ablation), evaluation table (CoT and
tool), and the ablation verdict. A stage that has not run is reported as missing, never faked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

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


class Report:
    def __init__(self, run_dir: Path, stage_names: Sequence[str]):
        self.run_dir = Path(run_dir)
        self.plots = self.run_dir / "report_plots"
        self.m = {s: read_manifest(self.run_dir / s) for s in stage_names}
        self.lines: List[str] = []

    def metrics(self, stage: str) -> Dict[str, Any]:
        m = self.m.get(stage)
        return (m or {}).get("metrics", {})

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def missing(self, *stages: str) -> bool:
        gone = [s for s in stages if self.m.get(s) is None]
        if gone:
            self.add(f"_Not available: stage(s) {', '.join(gone)} have not finished._", "")
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

    def evaluation(self) -> None:
        self.add("## Evaluation (SFT model)", "")
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
        ab = self.metrics("ablation").get("ablation", {})
        rows = []
        for model, r in ab.items():
            for bench, v in (r.get("loss") or {}).items():
                rows.append([model, bench, v.get("loss_per_token"), v.get("tokens"),
                             r.get("tokens"), r.get("steps")])
        self.table(["pretrained on", "benchmark", "loss/token", "scored tokens",
                    "train tokens", "steps"], rows)
        for model, r in ab.items():
            acc = {k: v for k, v in _flatten(r.get("accuracy") or {}).items() if _num(v)}
            if acc:
                self.add(f"Accuracy ({model}): {json.dumps(acc)}", "")
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
        self.curves("SFT loss", "sft_loss", ["sft"])
        self.evaluation()
        self.ablation()
        return "\n".join(self.lines) + "\n"


def write_report(run_dir: str | Path, stage_names: Sequence[str], out: str | Path,
                 title: str = "jz3 run report") -> Path:
    """Write the markdown report (atomically) and its PNGs; returns the report path."""
    text = Report(Path(run_dir), stage_names).build(title)
    atomic_write_text(out, text)
    log.info("report written to %s", out)
    return Path(out)
