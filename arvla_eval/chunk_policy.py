"""Moved: the chunked baseline is ``arvla_baselines.chunk`` (this name is kept for old imports)."""

from arvla_baselines.chunk import *  # noqa: F401,F403
from arvla_baselines.chunk import __all__  # noqa: F401
