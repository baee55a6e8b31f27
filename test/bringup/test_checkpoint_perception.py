"""Issue #19: an expert checkpoint carries the perception settings it was trained with, and
bring-up (launch files, `arvla bringup`) starts perception with them, or fails at start naming
the parameters file to use. Also: `arvla bringup` keeps its name:=value arguments from rclpy."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import torch
import yaml

from arvla.bringup import BringupError, parse_launch_args, split_ros_args, start_nodes
from arvla_base.config import load_config
from arvla.launch_graph import LaunchParseError, parse_launch_file
from arvla.perception_params import (CheckpointPerceptionParams, PerceptionSettingsError,
                                     read_node_params, resolve_perception_params,
                                     settings_differences, token_settings_of)
from arvla_action_expert.checkpoint import load_checkpoint
from arvla.commands.train import cli_main
from arvla_action_expert.train import TrainConfig, train
from arvla_perception.config import PerceptionConfig, token_settings
from bringup_helpers import PANDA_ARM, write_untrained_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "config" / "perception.yaml")
DEMO_PARAMS = ROOT / "config" / "perception_demo.yaml"
DEMO_SETTINGS = token_settings(PerceptionConfig(hidden_layer=10, token_grid=[2, 2]))


def _checkpoint(tmp_path, name="expert", *, perception=None, model_id="m"):
    return write_untrained_checkpoint(tmp_path / name, joints=PANDA_ARM, prefix_dim=8,
                                      model_id=model_id, perception=perception)


# ----------------------------------------------------------------------------- training records them

def test_training_records_the_perception_settings_and_stage_2_keeps_them(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, ROOT / "config" / "expert_tiny.yaml")
    cfg.optim.max_steps, cfg.optim.warmup_steps = 2, 0
    train(cfg, stage=1, out=tmp_path / "s1", progress=False, perception=DEMO_SETTINGS)
    assert load_checkpoint(tmp_path / "s1").meta.perception == DEMO_SETTINGS
    doc = json.loads((tmp_path / "s1" / "config.json").read_text())
    assert doc["meta"]["perception"]["hidden_layer"] == 10
    train(cfg, stage=2, out=tmp_path / "s2", init=tmp_path / "s1", progress=False)  # same data
    assert load_checkpoint(tmp_path / "s2").meta.perception == DEMO_SETTINGS


def test_train_command_records_a_perception_params_file(tmp_path):
    torch.set_num_threads(1)
    rc = cli_main(["--config", str(ROOT / "config" / "expert_tiny.yaml"), "--stage", "1",
                   "--max-steps", "2", "--out", str(tmp_path / "ck"), "--no-progress",
                   "--perception-params", str(DEMO_PARAMS)])
    assert rc == 0
    assert load_checkpoint(tmp_path / "ck").meta.perception == DEMO_SETTINGS


def test_a_checkpoint_without_perception_settings_still_loads(tmp_path):
    path = _checkpoint(tmp_path, perception=DEMO_SETTINGS)
    doc = json.loads((path / "config.json").read_text())
    del doc["meta"]["perception"]  # as written before checkpoints recorded them
    (path / "config.json").write_text(json.dumps(doc))
    ck = load_checkpoint(path)
    assert ck.meta.perception == {} and ck.meta.model_id == "m"


def test_the_demo_params_file_is_the_demo_s_perception():
    """config/perception_demo.yaml (for demo experts trained before settings were recorded) and
    the settings `arvla demo` trains with (config/demo.yaml) must not drift apart."""
    from arvla.demo import load_demo_config

    demo = load_demo_config(ROOT / "config" / "demo.yaml", quick=False)
    assert token_settings_of(read_node_params(DEMO_PARAMS)) == token_settings(demo.perception) == DEMO_SETTINGS
    # and demo.yaml's perception is the perception node's defaults (config/perception.yaml) + overrides
    assert token_settings_of(read_node_params(DEFAULT)) == token_settings(PerceptionConfig())


# ----------------------------------------------------------------------------- picking the file

def test_default_arguments_take_the_checkpoint_s_settings(tmp_path):
    ck = _checkpoint(tmp_path, perception=DEMO_SETTINGS)
    picked = resolve_perception_params(str(ck), "", DEFAULT, out_dir=tmp_path / "gen")
    assert pathlib.Path(picked.file).parent == tmp_path / "gen"
    assert picked.source.startswith(f"perception settings from checkpoint {ck}: hidden_layer 10 ")
    params = read_node_params(picked.file)
    assert token_settings_of(params) == DEMO_SETTINGS
    # the rest is the default file's (rate, topics...)
    base = read_node_params(DEFAULT)
    assert {k: v for k, v in params.items() if k != "hidden_layer"} == {
        k: v for k, v in base.items() if k != "hidden_layer"}
    again = resolve_perception_params(str(ck), "", DEFAULT, out_dir=tmp_path / "gen")
    assert again.file == picked.file  # named by content: one file per setting


def test_a_given_file_with_the_checkpoint_s_settings_is_used_as_it_is(tmp_path):
    ck = _checkpoint(tmp_path, perception=DEMO_SETTINGS)
    picked = resolve_perception_params(str(ck), str(DEMO_PARAMS), DEFAULT, out_dir=tmp_path)
    assert picked.file == str(DEMO_PARAMS) and "those checkpoint" in picked.source


def test_a_given_file_that_differs_fails_naming_the_parameter_and_the_file_to_use(tmp_path):
    ck = _checkpoint(tmp_path, perception=DEMO_SETTINGS)
    with pytest.raises(PerceptionSettingsError, match=r"sets hidden_layer -1, but the expert checkpoint "
                       r".* hidden_layer 10 .*Use perception_params:=(\S+\.yaml)") as err:
        resolve_perception_params(str(ck), DEFAULT, DEFAULT, out_dir=tmp_path / "gen")
    fix = str(err.value).split("perception_params:=")[1].split(" ")[0]
    assert token_settings_of(read_node_params(fix)) == DEMO_SETTINGS
    assert resolve_perception_params(str(ck), fix, DEFAULT).file == fix


def test_without_recorded_settings_or_checkpoint_the_files_are_used_as_before(tmp_path):
    old = _checkpoint(tmp_path)
    picked = resolve_perception_params(str(old), "", DEFAULT)
    assert picked.file == DEFAULT and "records none" in picked.source and "model_id 'm'" in picked.source
    assert resolve_perception_params(str(old), str(DEMO_PARAMS), DEFAULT).file == str(DEMO_PARAMS)
    assert resolve_perception_params("", "", DEFAULT).file == DEFAULT


def test_paths_are_compared_through_model_id_except_no_text_encoder():
    given = dict(DEMO_SETTINGS, model_path="/opt/models/effnet.pth", text_model_path="/opt/minilm")
    assert settings_differences(DEMO_SETTINGS, given) == []
    no_text = dict(DEMO_SETTINGS, text_model_path="none")
    assert settings_differences(DEMO_SETTINGS, no_text) == [("text_model_path", "", "none")]
    assert settings_differences({"hidden_layer": 10}, token_settings(PerceptionConfig())) == [
        ("hidden_layer", 10, -1)]


def test_launch_substitution_performs_like_bringup(tmp_path):
    """What `ros2 launch` calls (launch itself is not installed here: plain string arguments)."""
    ck = _checkpoint(tmp_path, perception=DEMO_SETTINGS)
    sub = CheckpointPerceptionParams(checkpoint=str(ck), perception_params="", default=[DEFAULT])
    assert sub.perform(None) == resolve_perception_params(str(ck), "", DEFAULT).file
    with pytest.raises(PerceptionSettingsError, match="hidden_layer"):
        CheckpointPerceptionParams(str(ck), DEFAULT, DEFAULT).perform(None)


def test_launch_parser_needs_all_arguments_of_the_substitution(tmp_path):
    bad = tmp_path / "bad.launch.py"
    bad.write_text("def generate_launch_description():\n"
                   "    p = CheckpointPerceptionParams(checkpoint=LaunchConfiguration('checkpoint'))\n"
                   "    return LaunchDescription([])\n")
    with pytest.raises(LaunchParseError, match=r"bad\.launch\.py:2: CheckpointPerceptionParams needs"):
        parse_launch_file(bad)


# ----------------------------------------------------------------------------- at start of the graph

@pytest.mark.slow
def test_checkpoint_without_settings_fails_at_start_naming_the_params_file(ros_context, tmp_path,
                                                                           demo_perception):
    """A demo expert trained before checkpoints recorded perception settings: the default
    perception would make other prefixes; the error names config/perception_demo.yaml, which works."""
    _, model_id, dim = demo_perception
    old = write_untrained_checkpoint(tmp_path / "old_demo_expert", joints=PANDA_ARM, prefix_dim=dim,
                                     model_id=model_id)
    graph = parse_launch_file(ROOT / "launch" / "bringup.launch.py")
    args = [f"checkpoint:={old}", "with_sim:=true", "use_sim_time:=true"]
    with pytest.raises(BringupError, match=r"FAULT on every prefix.*records no perception settings.*"
                                           r"pass perception_params:=\S+/config/perception_demo\.yaml"):
        start_nodes(graph, parse_launch_args(graph, args), context=ros_context)
    nodes = start_nodes(graph, parse_launch_args(graph, [*args, f"perception_params:={DEMO_PARAMS}"]),
                        context=ros_context)
    try:
        by_name = {n.get_name(): n for n in nodes}
        assert by_name["arvla_perception"].backbone.model_id == model_id
    finally:
        for n in nodes:
            n.destroy_node()


def test_explicit_params_that_differ_from_the_checkpoint_fail_at_start(ros_context, tmp_path):
    ck = _checkpoint(tmp_path, perception=DEMO_SETTINGS)
    graph = parse_launch_file(ROOT / "launch" / "bringup.launch.py")
    values = parse_launch_args(graph, [f"checkpoint:={ck}", f"perception_params:={DEFAULT}"])
    with pytest.raises(PerceptionSettingsError, match="perception_params .*perception.yaml sets hidden_layer -1"):
        start_nodes(graph, values, context=ros_context)


# ----------------------------------------------------------------------------- rclpy arguments

def test_launch_arguments_are_not_given_to_rclpy():
    assert split_ros_args(["checkpoint:=/x", "with_sim:=true", "--duration", "3"]) == (
        ["checkpoint:=/x", "with_sim:=true", "--duration", "3"], [])
    assert split_ros_args(["checkpoint:=/x", "--ros-args", "--log-level", "warn"]) == (
        ["checkpoint:=/x"], ["--ros-args", "--log-level", "warn"])


@pytest.mark.parametrize("argv, warns", [
    (["checkpoint:=/x", "with_sim:=true"], False),
    (["checkpoint:=/x", "with_sim:=true", "--ros-args", "--log-level", "info"], False),
    (None, True),  # control: what rclpy.init got before, the launch arguments themselves
])
def test_rclpy_init_logs_no_deprecated_remap_warning(argv, warns):
    code = ("import sys, rclpy; from arvla.bringup import split_ros_args\n"
            "own = ['checkpoint:=/x', 'with_sim:=true']\n"
            f"args = own if {argv is None} else split_ros_args({argv!r})[1]\n"
            "rclpy.init(args=args); rclpy.shutdown()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ("This syntax is deprecated" in proc.stderr) is warns, proc.stderr


def test_generated_params_file_is_valid_ros_yaml(tmp_path):
    ck = _checkpoint(tmp_path, perception=DEMO_SETTINGS)
    doc = yaml.safe_load(pathlib.Path(resolve_perception_params(str(ck), "", DEFAULT,
                                                                out_dir=tmp_path).file).read_text())
    assert doc["arvla_perception"]["ros__parameters"]["token_grid"] == [2, 2]
