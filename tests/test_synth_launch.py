"""Launch scripts: `launch/synthesize.py synth.step=all` + `launch/filter.py` as subprocesses,
and the Hydra submitit launcher configs."""

from __future__ import annotations

import json
import subprocess
import sys

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from jz3.config.compose import register
from jz3.paths import CONFIG_DIR
from tests.synth_fixtures import snippets_file, tiny_synthesizer  # noqa: F401


def test_synthesize_then_filter_scripts(project_root, tiny_synthesizer, snippets_file,  # noqa: F811
                                        tmp_path):
    run = tmp_path / "run"
    common = [f"run_dir={run}", "synth=tiny"]
    subprocess.run([sys.executable, "launch/synthesize.py", *common, "synth.step=all",
                    "synth.num_shards=2", "synth.limit=4", "synth.max_new_tokens=4",
                    f"synth.model_path={tiny_synthesizer}", f"synth.input={snippets_file}"],
                   cwd=project_root, check=True, capture_output=True, text=True, timeout=600)
    manifest = json.loads((run / "synth" / "manifest.json").read_text())
    assert manifest["stage"] == "synthesize" and manifest["counts"]["snippets"] == 4
    assert manifest["counts"]["ok"] + manifest["counts"]["failed"] == 4
    subprocess.run([sys.executable, "launch/filter.py", *common], cwd=project_root, check=True,
                   capture_output=True, text=True, timeout=600)
    fm = json.loads((run / "filter" / "manifest.json").read_text())
    assert fm["stage"] == "filter" and fm["counts"]["read"] == manifest["counts"]["ok"]
    assert (run / "filter" / "cot").is_dir() and (run / "filter" / "tool").is_dir()


def test_hydra_submitit_launcher_configs():
    register()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["hydra/launcher=jz3_slurm_cpu"],
                            return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.max_num_timeout == 3 and launcher.gpus_per_node is None
    GlobalHydra.instance().clear()
