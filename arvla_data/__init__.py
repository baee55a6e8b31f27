"""arvla's data: rosbag2 recording and reading (``bag``, ``record``), bags to training episodes
(``episodes``, ``prefixes``), LeRobot datasets in and out (``lerobot``, ``lerobot_export``,
``lerobot_video``). No evaluation here: that is ``arvla_eval``."""
