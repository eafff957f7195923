"""The CAMAT default is the setting the benchmark measured (docs/bench_camat.md, "Session 15")."""

import importlib.util
from dataclasses import asdict
from pathlib import Path

from geocamat.camat import CAMAT


def test_the_default_is_the_benchmarked_candidate():
    path = Path(__file__).resolve().parents[1] / "bench" / "camat_accuracy.py"
    spec = importlib.util.spec_from_file_location("camat_accuracy", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    name, options = bench.METHODS["camat-randarea"]
    assert name == "camat"
    assert asdict(CAMAT().config) == asdict(CAMAT(**options).config)
    name, options = bench.METHODS["camat-default-blur2"]  # the former default: the same but its random squares
    assert {k for k, v in asdict(CAMAT(**options).config).items() if asdict(CAMAT().config)[k] != v} == {"random_area"}
