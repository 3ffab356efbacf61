"""Benchmark loading for evaluation: re-exports of the registry in `jz3.benchmarks` (the one
place that knows benchmark files, fields and answer kinds)."""

from jz3.benchmarks import (
    LETTERS,
    MULTIPLE_CHOICE,
    BenchmarkFormatError,
    EvalItem,
    benchmark_file,
    load_benchmark,
    tabmwp_item,
)

__all__ = ["LETTERS", "MULTIPLE_CHOICE", "BenchmarkFormatError", "EvalItem", "benchmark_file",
           "load_benchmark", "tabmwp_item"]
