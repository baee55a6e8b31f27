"""arvla: AR-VLA (autoregressive action expert + vision-language prefixes) on ROS 2.

Python packages of the ``arvla`` ROS package, lowest layer first (README.md, "Layout"):
- ``arvla_base``: config, node parameters, stamp helpers, atomic writes, the episode schema,
  the ``StepPolicy`` interface, the shared training-loop pieces;
- the parts: ``arvla_perception``, ``arvla_sim``, ``arvla_action_expert``, ``arvla_data``,
  ``arvla_baselines``;
- ``arvla_eval``: closed-loop evaluation;
- ``arvla`` (this package): the command line ``arvla`` and its subcommands, demo, doctor, bringup.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
