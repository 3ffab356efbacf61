"""Launch scripts: `launch/synthesize.py` (every shard, then merge) + `launch/filter.py` as
subprocesses running single stages through the runner, and the Hydra submitit launcher configs."""

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
    p = "stages.synthesize.synth"
    common = [f"run_dir={run}", "synth@stages.synthesize.synth=tiny"]
    subprocess.run([sys.executable, "launch/synthesize.py", *common, "stages.synthesize.shards=2",
                    f"{p}.limit=4", f"{p}.max_new_tokens=4", f"{p}.model_path={tiny_synthesizer}",
                    f"{p}.input={snippets_file}"],
                   cwd=project_root, check=True, capture_output=True, text=True, timeout=600)
    manifest = json.loads((run / "synthesize" / "manifest.json").read_text())
    res = manifest["result"]
    assert manifest["stage"] == "synthesize" and res["snippets"] == 4
    assert res["ok"] + res["failed"] == 4 and res["shards"] == 2
    assert manifest["inputs"] == {}  # its inputs came from its own section, not other stages
    assert manifest["config"]["synth"]["input"] == str(snippets_file)
    # 4 new tokens of a random model parse into nothing: the merge succeeds with a warning in
    # the manifest, and the filter, which finds the synthesize stage's records through its
    # typed result, stops on that empty input naming the file (never a silent success)
    assert res["ok"] == 0 and manifest["warnings"][0].startswith("synthesize: 0 of 4 snippets")
    proc = subprocess.run([sys.executable, "launch/filter.py", *common], cwd=project_root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert f"{run / 'synthesize' / 'out' / 'synth.jsonl'}: no synth records (empty input)" \
        in proc.stderr
    assert not (run / "filter" / "manifest.json").exists()


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
