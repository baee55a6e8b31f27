"""PerceptionConfig validation and the shipped params file."""

from __future__ import annotations

import pytest

from arvla_base.config import ConfigError, from_dict, load_yaml
from arvla_perception.config import FIELD_HELP, PerceptionConfig, field_names


def test_every_field_has_help_text():
    assert list(FIELD_HELP) == field_names()


@pytest.mark.parametrize("key,value,match", [
    ("backbone", "resnet", "backbone: must be one of"),
    ("image_size", 8, "image_size: must be in 16..4096, got 8"),
    ("token_grid", [2], r"token_grid: must be \[rows, cols\]"),
    ("token_grid", [0, 3], "token_grid"),
    ("hidden_layer", -2, "hidden_layer: must be -1 or >= 0, got -2"),
    ("text_tokens", 0, "text_tokens"),
    ("dim", -1, "dim"),
    ("device", "gpu", "device: must be cpu, cuda or cuda:N, got 'gpu'"),
    ("dtype", "int8", "dtype: must be one of"),
    ("max_rate_hz", -1.0, "max_rate_hz"),
    ("diagnostics_period_s", 0.0, "diagnostics_period_s"),
    ("prefix_topic", "", "prefix_topic"),
    ("num_threads", "two", "num_threads: expected int"),
    ("colour", 1, "unknown config key"),
])
def test_bad_values_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(PerceptionConfig, {key: value})


def test_params_file_matches_the_config(repo_root):
    data = load_yaml(repo_root / "config" / "perception.yaml")
    params = dict(data["arvla_perception"]["ros__parameters"])
    params.pop("use_sim_time")  # a standard rclpy parameter, not ours
    assert set(params) == set(field_names()), "config/perception.yaml and PerceptionConfig differ"
    cfg = from_dict(PerceptionConfig, params)
    assert cfg == PerceptionConfig()  # the file documents the defaults
