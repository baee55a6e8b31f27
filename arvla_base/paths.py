"""Where arvla's installed files are: the package share directory (launch/, config/)."""

from __future__ import annotations

import pathlib

__all__ = ["config_file", "package_share_dir"]


def package_share_dir(package: str = "arvla") -> pathlib.Path:
    """Share dir of ``package``: ament index on a real install, else this source checkout."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            share = pathlib.Path(get_package_share_directory(package))
            if (share / "launch").is_dir():
                return share
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return pathlib.Path(__file__).resolve().parents[1]


def config_file(name: str) -> pathlib.Path:
    """``config/<name>`` of the package (installed share dir, else this source checkout)."""
    return package_share_dir() / "config" / name
