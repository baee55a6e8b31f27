"""Helpers for bring-up tests: tiny untrained expert checkpoints that fit our configs."""

from __future__ import annotations

import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
PANDA_ARM = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]


def write_untrained_checkpoint(path: pathlib.Path, *, joints: list[str], prefix_dim: int,
                               control_rate_hz: float = 20.0, seed: int = 0, model_id: str = "",
                               perception: dict | None = None) -> pathlib.Path:
    """A real checkpoint directory (safetensors + config) with random weights, for plumbing tests.

    The normaliser centres on a mid-range Panda pose with small std, so that even random weights
    produce targets near that pose (the node clamps them to limits anyway). ``model_id`` ("" =
    any prefix) and ``perception`` (recorded perception settings) go into its metadata."""
    import torch

    from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint
    from arvla_action_expert.model import ARExpert, ExpertConfig
    from arvla_action_expert.normalize import Normalizer

    n = len(joints)
    cfg = ExpertConfig(state_dim=n, action_dim=n, prefix_dim=prefix_dim, max_prefix_tokens=8,
                       n_embd=32, n_layer=2, n_head=2, ffn=64, window=16, head="regression")
    torch.manual_seed(seed)
    model = ARExpert(cfg)
    home = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8, 0.02][:n], np.float32)
    def norm() -> Normalizer:
        return Normalizer(mean=home.copy(), std=np.full(n, 0.05, np.float32))

    meta = CheckpointMeta(model_id=model_id, control_rate_hz=control_rate_hz, joint_names=list(joints),
                          stage=2, perception=dict(perception or {}))
    return save_checkpoint(path, model, state_norm=norm(), target_norm=norm(), meta=meta)


def demo_perception_settings() -> dict:
    """The token settings `arvla demo` trains on (config/demo.yaml's perception: block 10, 2x2)."""
    from arvla.demo import load_demo_config
    from arvla_perception.config import token_settings

    return token_settings(load_demo_config(ROOT / "config" / "demo.yaml", quick=False).perception)


def perception_model_id(settings: dict) -> tuple[str, int]:
    """(model_id, token width) of the bundled backbone with these settings."""
    from arvla_perception.backbone import load_backbone
    from arvla_perception.config import PerceptionConfig

    backbone = load_backbone(PerceptionConfig(**settings))
    return backbone.model_id, backbone.dim
