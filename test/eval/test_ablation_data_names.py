"""bench/ablations.py names its demonstration sets ``inprocN[gK][mj|mjr][nS][jJ][sO][retry]``; the
names decide which demonstrations a row trains on, so a misread name would silently compare the
wrong data."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "ablations.py"


@pytest.fixture(scope="module")
def ablations():
    spec = importlib.util.spec_from_file_location("ablations_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("name, want", [
    ("inproc150", dict(n=150, grid=None, profile="trapezoid", noise=None, offset=0, retries=0)),
    ("inproc150g4mj", dict(n=150, grid=4, profile="min_jerk", noise=None, offset=0, retries=0)),
    ("inproc150g4mjr", dict(n=150, grid=4, profile="min_jerk_replan", noise=None, offset=0, retries=0)),
    ("inproc150g4mjn4", dict(n=150, grid=4, profile="min_jerk", noise=0.04, offset=0, retries=0)),
    ("inproc150g4mjs150", dict(n=150, grid=4, profile="min_jerk", noise=None, offset=150, retries=0)),
    ("inproc150g4mjretry", dict(n=150, grid=4, profile="min_jerk", noise=None, offset=0, retries=2)),
    ("inproc150g4mjrretry", dict(n=150, grid=4, profile="min_jerk_replan", noise=None, offset=0, retries=2)),
    ("inproc150g4mjj50", dict(n=150, grid=4, profile="min_jerk", noise=None, offset=0, retries=0, jitter=0.5)),
    ("inproc150g4mjn4j30s150", dict(n=150, grid=4, profile="min_jerk", noise=0.04, offset=150, retries=0,
                                    jitter=0.3)),
])
def test_data_names_parse(ablations, name, want):
    assert ablations.parse_data(name) == ablations.DataSpec(**want)


@pytest.mark.parametrize("name", ["inproc", "inproc150g", "inproc150mjx", "inproc150retrys5", "ros2"])
def test_bad_data_names_are_refused_with_the_grammar(ablations, name):
    with pytest.raises(SystemExit, match="unknown demonstrations"):
        ablations.parse_data(name)


def test_baseline_rows_and_recipe_rows_do_not_overlap(ablations):
    assert not set(ablations.BASELINES) & set(ablations.ROWS)
    assert ablations.BASELINES["chunk_te2x"] == ("temporal_ensemble", 2, 0)
    assert ablations.BASELINES["chunkhalf"] == ("chunk", 0.5, 0)   # the budget before 2026-12-07
    assert ablations.BASELINES["chunk_tes1"] == ("temporal_ensemble", 1, 1)
