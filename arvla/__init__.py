"""arvla: AR-VLA (autoregressive action expert + vision-language prefixes) on ROS 2.

Python packages of the ``arvla`` ROS package:
- ``arvla``: shared pieces (typed YAML config, command line ``arvla``, doctor).
- ``arvla_perception``: image (+ instruction) -> vision-language prefix.
- ``arvla_action_expert``: the AR action expert core (model, Hybrid KV cache, re-anchoring,
  training) and its ROS node.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
