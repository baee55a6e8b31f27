"""Frame tokens computed offline: the perception node's backbone over recorded camera frames."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["OfflinePrefixes"]


class OfflinePrefixes:
    """Frame tokens for an episode converted from a bag without prefixes: the perception
    node's backbone (built from the same parameters) over the recorded camera frames."""

    def __init__(self, perception: dict[str, Any], instruction: str) -> None:
        from arvla_base.config import from_dict
        from arvla_perception.backbone import load_backbone
        from arvla_perception.config import PerceptionConfig

        self.backbone = load_backbone(from_dict(PerceptionConfig, dict(perception),
                                                prefix="perception."))
        self.instruction = instruction

    def fill(self, episode: dict[str, np.ndarray]) -> None:
        """Replace ``images`` by ``frame_tokens`` (and set ``model_id``), in place."""
        from arvla_base.episode import EpisodeError

        images = episode.pop("images", None)
        if images is None or not len(images):
            raise EpisodeError("offline prefixes: the bag holds no camera frame inside the episode")
        episode["frame_tokens"] = self.backbone.encode_batch(list(images), self.instruction)
        episode["model_id"] = np.asarray(self.backbone.model_id)
