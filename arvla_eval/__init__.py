"""arvla evaluation: closed-loop rollout and demonstration collection through the ROS graph
(``rollout``, ``collect_ros``), ``evaluate`` (AR expert vs baselines), ``metrics``, ``records``,
``report``, open-loop ``replay`` and the ``streaming`` bench. Data (bags, episodes, LeRobot) is
``arvla_data``; the baselines are ``arvla_baselines``.

``metrics``, ``records`` and ``report`` import no ROS.
"""

from __future__ import annotations

__all__ = ["metrics", "records", "report"]
