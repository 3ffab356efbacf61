"""Metrics JSON, the markdown table (benchmarks x settings), and the optional W&B log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from jz3.config.enums import WandbMode
from jz3.data.records import atomic_write_text

log = logging.getLogger(__name__)
# benchmark -> setting -> {accuracy, n, correct, no_answer, shots} or {status, reason}
Metrics = Dict[str, Dict[str, Dict[str, Union[float, int, str]]]]
UNAVAILABLE = "unavailable"


def _scored(m: Optional[Dict[str, Any]]) -> bool:
    return m is not None and "accuracy" in m


def markdown_table(metrics: Metrics, settings: List[str]) -> str:
    """Accuracy (%) per benchmark and setting, with the average over scored benchmarks;
    `–` = not evaluated in that setting, `unavailable` = its data file is absent."""
    lines = ["| benchmark | " + " | ".join(settings) + " |",
             "|---|" + "---|" * len(settings)]
    sums: Dict[str, List[float]] = {s: [] for s in settings}
    for bench in metrics:
        cells = []
        for s in settings:
            m = metrics[bench].get(s)
            if m is None:
                cells.append("–")
            elif not _scored(m):
                cells.append(str(m.get("status", "–")))
            else:
                sums[s].append(m["accuracy"])
                shots = f", {int(m['shots'])}-shot" if m.get("shots") else ""
                cells.append(f"{100 * m['accuracy']:.1f} (n={int(m['n'])}{shots})")
        lines.append(f"| {bench} | " + " | ".join(cells) + " |")
    avg = [f"{100 * sum(v) / len(v):.1f}" if v else "–" for v in sums.values()]
    lines.append("| **average** | " + " | ".join(avg) + " |")
    return "\n".join(lines) + "\n"


def write_reports(out_dir: Path, metrics: Metrics, settings: List[str]) -> Dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    mpath, tpath = out_dir / "metrics.json", out_dir / "results.md"
    atomic_write_text(mpath, json.dumps(metrics, indent=2))
    atomic_write_text(tpath, markdown_table(metrics, settings))
    return {"metrics": mpath, "table": tpath}


def log_wandb(metrics: Metrics, mode: WandbMode, project: str, run_name: str,
              out_dir: Path, config: Optional[dict] = None) -> Optional[str]:
    """Log accuracies as `eval/<benchmark>/<setting>` plus the table; returns the run dir."""
    if mode == WandbMode.disabled:
        return None
    import wandb

    run = wandb.init(project=project, name=run_name, mode=mode.value, dir=str(out_dir),
                     config=config or {}, reinit=True)
    scored = [(b, s, m) for b, per in metrics.items() for s, m in per.items() if _scored(m)]
    flat = {f"eval/{b}/{s}": m["accuracy"] for b, s, m in scored}
    table = wandb.Table(columns=["benchmark", "setting", "accuracy", "n"],
                        data=[[b, s, m["accuracy"], m["n"]] for b, s, m in scored])
    run.log({**flat, "eval/table": table})
    run_dir = run.dir
    run.finish()
    return run_dir
