"""arvla's base layer: what every other part of arvla shares, and imports nothing of arvla's.

- ``config``: typed YAML configs (dataclasses that refuse unknown keys and bad values);
- ``params``: declaring a node's parameters from its config dataclass, reading parameter files;
- ``rosutil``: the one stamp <-> nanoseconds conversion and small rclpy helpers;
- ``fileio``: atomic file writes;
- ``episode``: the one training-episode schema (arrays, metadata, checks, .npz IO);
- ``policy``: ``StepPolicy``, the interface the expert node runs any policy through.
"""
