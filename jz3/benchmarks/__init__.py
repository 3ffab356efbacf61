"""Benchmarks: the typed registry (`Benchmark`, `BenchmarkSpec`, `REGISTRY`) and loaders.

A leaf package (imports only `jz3.config`): evaluation, decontamination and the loss evaluation
read benchmark knowledge from here and nowhere else.
"""

from jz3.benchmarks.io import BenchmarkFormatError, read_records
from jz3.benchmarks.registry import (
    LETTERS,
    MULTIPLE_CHOICE,
    REGISTRY,
    AnswerKind,
    Benchmark,
    BenchmarkSpec,
    EvalItem,
    ReferenceKind,
    benchmark_file,
    find_file,
    last_boxed,
    load_benchmark,
    parse_benchmark,
    question_text,
    reference_pairs,
    spec,
    tabmwp_item,
)

__all__ = ["LETTERS", "MULTIPLE_CHOICE", "REGISTRY", "AnswerKind", "Benchmark",
           "BenchmarkFormatError", "BenchmarkSpec", "EvalItem", "ReferenceKind",
           "benchmark_file", "find_file", "last_boxed", "load_benchmark", "parse_benchmark",
           "question_text", "read_records", "reference_pairs", "spec", "tabmwp_item"]
