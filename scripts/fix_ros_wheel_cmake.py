"""Rewrite the wheel-build-machine include paths inside the ros-* wheels' exported CMake files.

The ``ros-*`` msg wheels on PyPI export CMake targets whose INTERFACE_INCLUDE_DIRECTORIES point at
the wheel build machine's Python (``/opt/python/cp311-cp311/include/python3.11``) and numpy
include dirs, which do not exist here, so CMake's generate step fails with "references files it
does not provide". Run once after installing the wheels:  python fix_ros_wheel_cmake.py VENV
"""

from __future__ import annotations

import pathlib
import sys
import sysconfig

import numpy

BUILD_PY = "/opt/python/cp311-cp311"


def main(venv: str) -> int:
    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    pyver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    replacements = [
        (f"{BUILD_PY}/lib/{pyver}/site-packages/numpy/_core/include", np_inc),
        (f"{BUILD_PY}/include/{pyver}", py_inc),
    ]
    changed = 0
    for path in pathlib.Path(venv, "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        new = text
        for old, repl in replacements:
            new = new.replace(old, repl)
        if new != text:
            path.write_text(new, errors="surrogateescape")
            changed += 1
    print(f"fix_ros_wheel_cmake: {changed} CMake files patched (python include -> {py_inc}, "
          f"numpy include -> {np_inc})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fix_ros_wheel_cmake.py VENV")
    sys.exit(main(sys.argv[1]))
