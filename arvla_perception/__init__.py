"""arvla perception: camera frame + instruction -> vision-language prefix tokens (VLPrefix).

The core (config, image decoding, backbones, the latest-frame buffer) imports no ROS; the node
in ``arvla_perception.node`` is a thin rclpy adapter around it.
"""

from __future__ import annotations

from .backbone import Backbone, BackboneError, load_backbone
from .config import PerceptionConfig
from .image import ImageEncodingError, fields_to_rgb, image_msg_to_rgb
from .pipeline import LatestSlot, PerceptionStats

__all__ = ["Backbone", "BackboneError", "ImageEncodingError", "LatestSlot", "PerceptionConfig",
           "PerceptionStats", "fields_to_rgb", "image_msg_to_rgb", "load_backbone"]
