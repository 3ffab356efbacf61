"""Data config: tokenizer, packing, mixing and sampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from jz3.config.enums import CorpusKind, OnError, Packing, SnippetRule, TokenizerKind


@dataclass
class TokenizerConfig:
    kind: TokenizerKind = TokenizerKind.sentencepiece
    path: Optional[str] = None  # tokenizer.model file or HF tokenizer folder
    # Training a sentencepiece model for tiny runs (used when path is None or missing).
    train_files: List[str] = field(default_factory=list)
    vocab_size: int = 2048
    model_type: str = "bpe"
    train_max_sentences: int = 200000
    save_dir: str = "${run_dir}/tokenizer"


@dataclass
class DataSource:
    """One source of training records, mixed with the others by weight."""

    name: str = "source"
    path: str = ""  # a file, a folder of shards, or a glob
    weight: float = 1.0


@dataclass
class SnippetConfig:
    corpus: List[str] = field(default_factory=list)  # corpus JSONL files or globs
    size: int = 1000  # target characters per snippet
    min_size: int = 200
    max_snippets: Optional[int] = None
    source_weights: dict = field(default_factory=dict)  # source name -> weight
    seed: int = 0
    # paragraphs: jz3's cut (size / min_size at paragraph and sentence boundaries); release: the
    # release's builders, by each source's kind (`kinds`; see docs/DATA.md): at most `size`
    # characters per snippet, no minimum, wiki snippets at all eight CoT levels.
    rule: SnippetRule = SnippetRule.paragraphs
    kinds: Dict[str, CorpusKind] = field(default_factory=dict)  # corpus source name -> kind
    default_kind: Optional[CorpusKind] = None  # for sources not in `kinds` (None: an error)


@dataclass
class DataConfig:
    sources: List[DataSource] = field(default_factory=list)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    seq_len: int = 2048
    packed_dir: str = "${run_dir}/packed"
    num_workers: int = 2
    on_error: OnError = OnError.raise_
    # True: the sources by their natural sizes, ignoring `weight`: each epoch is one seeded
    # permutation of every packed sequence of every source (the release concatenates and
    # shuffles its CoT and tool corpora); False: sampled by `weight`.
    natural_mix: bool = False
    # Read after the mixture, once per pass, never mixed into it: the release's SFT data at the
    # end of its one pretraining run (`prepare_train_data.py`: CoT + tool shuffled, then SFT
    # shuffled, concatenated and read in order). `weight` is not used for these.
    tail_sources: List[DataSource] = field(default_factory=list)
    tail_shuffle: bool = True  # a seeded permutation of the tail's sequences (else file order)
    # True: an `{input, output}` (or `{prompt, completion}`) record is trained as one text
    # `input + output`, loss on all of it (continued pretraining on such records as plain text);
    # False: loss on the output only, as the release (`apply_src_loss` off)
    records_as_text: bool = False
    # release: whole documents (each cut to seq_len + EOS) packed greedily into padded rows of
    # seq_len + 1 tokens; concat: documents concatenated and cut every seq_len tokens; none: one
    # document per row, right-truncated and padded (LESS / HF Trainer batches; steps = epochs x
    # documents / global batch). See docs/DATA.md.
    packing: Packing = Packing.concat
    add_bos: bool = True
    add_eos: bool = True
    seed: int = 0
