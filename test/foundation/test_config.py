"""arvla_base.config: typed YAML configs that name the offending key."""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import pytest

from arvla_base.config import ConfigError, from_dict, load_config, require, to_dict


@dataclasses.dataclass
class Inner:
    width: int = 8
    rate_hz: float = 10.0
    names: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        require(self.width > 0, "width", self.width, "must be > 0")


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    mode: Literal["a", "b"] = "a"
    path: Optional[str] = None
    enabled: bool = True


def test_round_trip_and_int_to_float():
    cfg = from_dict(Outer, {"inner": {"width": 4, "rate_hz": 20, "names": ["j1"]}, "mode": "b"})
    assert cfg.inner.rate_hz == 20.0 and isinstance(cfg.inner.rate_hz, float)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, match", [
    ({"inner": {"widht": 3}}, r"unknown config key\(s\) inner\.widht"),
    ({"inner": {"width": "four"}}, r"inner\.width: expected int, got 'four'"),
    ({"inner": {"width": True}}, r"inner\.width: expected int"),
    ({"inner": {"width": 0}}, r"inner\.width: must be > 0, got 0"),
    ({"mode": "c"}, r"mode: must be one of \['a', 'b'\]"),
    ({"enabled": "yes"}, r"enabled: expected bool"),
    ({"inner": {"names": "j1"}}, r"inner\.names: expected a list"),
    ({"inner": 3}, r"inner: expected a mapping"),
])
def test_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text("outer:\n  inner:\n    width: 2\n  bogus: 1\n")
    with pytest.raises(ConfigError, match=r"ok\.yaml: unknown config key\(s\) outer\.bogus"):
        load_config(Outer, ok, section="outer")
