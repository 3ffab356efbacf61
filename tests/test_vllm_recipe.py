"""`+exp=smol_recipe` composes to the recipe with SmolLM2-135M-Instruct in every model role and
the vLLM engine for synthesis and accuracy (no stage runs here)."""

from __future__ import annotations

from jz3.config import compose
from jz3.config.enums import GenBackend, TokenizerKind
from jz3.models.gguf_import import SMOLLM2_DIR


def test_smol_recipe_puts_smollm2_in_every_model_role(tmp_path):
    cfg = compose(["+exp=smol_recipe", f"run_dir={tmp_path}"])
    st = cfg.stages
    for name in ("distill", "influence", "distill_boost", "pretrain", "pretrain_raw"):
        job = getattr(st, name)
        assert job.model.path == str(SMOLLM2_DIR), name
        assert (job.data.tokenizer.kind, job.data.tokenizer.path) == \
            (TokenizerKind.hf, str(SMOLLM2_DIR)), name
    assert st.synthesize.synth.backend == st.influence.synth.backend == GenBackend.vllm
    assert st.evaluate.eval.backend == st.ablation.eval.backend == GenBackend.vllm
    assert st.pretrain_raw.enabled and st.pretrain_raw.match_pretrain_steps
    assert st.pretrain_raw.extra_seeds == [1] and not st.sft.enabled
    assert st.ablation.loss_eval.limit is None and st.ablation.loss_eval.accuracy_limit == 16
