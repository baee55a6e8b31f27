"""node_config.py and config/action_expert.yaml: every parameter, validated, errors name the key."""

from __future__ import annotations

import dataclasses

import pytest

from arvla_base.config import ConfigError, load_yaml
from arvla_action_expert.node_config import NODE_NAME, ExpertNodeConfig, config_from_parameters, parameter_fields


def test_every_field_has_a_description():
    for f in parameter_fields():
        assert len(f.metadata.get("help", "")) > 10, f.name


def test_shipped_yaml_lists_every_parameter_and_is_valid(repo_root):
    data = load_yaml(repo_root / "config" / "action_expert.yaml")
    params = data[NODE_NAME]["ros__parameters"]
    fields = {f.name for f in parameter_fields()}
    assert set(params) - {"use_sim_time"} == fields
    params = {k: v for k, v in params.items() if k != "use_sim_time"}
    cfg = config_from_parameters(params)
    joints = cfg.controller_joints()
    limits = cfg.joint_limits(joints)
    assert limits.dof == len(joints) == 8  # Panda arm + finger (the embedded sim's controller)
    assert cfg.trajectory_topic == "arm_controller/joint_trajectory"  # relative: inside the node namespace
    assert cfg.period_ns == 50_000_000


@pytest.mark.parametrize("key, value, match", [
    ("control_rate", 0.0, "control_rate: must be in"),
    ("lookahead_steps", 0, "lookahead_steps: must be in"),
    ("ensemble_steps", 0, "ensemble_steps: must be >= 1"),
    ("ensemble_m", float("inf"), "ensemble_m: must be a finite number"),
    ("controller_name", "a/b", "controller_name: must be a non-empty name"),
    ("joints", ["a", "a"], "joints: must not repeat"),
    ("max_staleness", -1, "max_staleness: must be >= 0"),
    ("joint_state_timeout", 0.0, "joint_state_timeout: must be > 0"),
    ("velocity_scale", 1.5, "velocity_scale: must be in"),
    ("position_min", [0.0], "position_min: must have one value per joint"),
    ("control_rate", "fast", "control_rate: expected float"),
    ("no_such_key", 1, "unknown config key"),
])
def test_bad_values_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        config_from_parameters({"joints": ["a", "b"], key: value})


def test_joints_from_controllers_yaml_and_limits_from_file(tmp_path):
    (tmp_path / "c.yaml").write_text("arm_controller:\n  ros__parameters:\n    joints: [a, b]\n")
    (tmp_path / "l.yaml").write_text(
        "joint_limits:\n  a: {max_velocity: 1.0}\n  b: {max_velocity: 2.0}\n")
    cfg = ExpertNodeConfig(controllers_yaml=str(tmp_path / "c.yaml"), joint_limits_yaml=str(tmp_path / "l.yaml"),
                           position_min=[-1.0, -1.0], position_max=[1.0, 1.0])
    joints = cfg.controller_joints()
    assert joints == ["a", "b"]
    assert cfg.joint_limits(joints).max_velocity.tolist() == [1.0, 2.0]
    no_vel = dataclasses.replace(cfg, joint_limits_yaml="")
    with pytest.raises(ConfigError, match="joint limits: joint 'a': no max_velocity limit"):
        no_vel.joint_limits(joints)
    with pytest.raises(ConfigError, match="controllers_yaml: .*no controller 'other'"):
        dataclasses.replace(cfg, controller_name="other").controller_joints()


def test_no_joint_source_is_an_error():
    with pytest.raises(ConfigError, match="joints: is empty and controllers_yaml is not set"):
        ExpertNodeConfig()
