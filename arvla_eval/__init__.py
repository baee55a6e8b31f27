"""arvla evaluation tools: rosbag2 recording/reading, episode export, metrics.

The core modules (``bag``, ``episodes``, ``metrics``, ``lerobot``) import no ROS; only
``record`` (the ``arvla record`` command) uses rclpy.
"""

from __future__ import annotations

__all__ = ["bag", "episodes", "lerobot", "metrics"]
