"""ament_python package `arvla`: perception + AR action expert (+ tools). See README.md."""

from __future__ import annotations

import glob
import os
import re

from setuptools import find_packages, setup

PACKAGE = "arvla"
HERE = os.path.dirname(os.path.abspath(__file__))


def _version_from_package_xml() -> str:
    # One source of truth for the version: package.xml (a test checks they agree).
    with open(os.path.join(HERE, "package.xml"), encoding="utf-8") as f:
        match = re.search(r"<version>([^<]+)</version>", f.read())
    if match is None:
        raise RuntimeError("package.xml has no <version>")
    return match.group(1).strip()


# The Python packages, lowest layer first (test/foundation/test_layers.py checks the imports).
PYTHON_PACKAGES = ["arvla_base", "arvla_perception", "arvla_sim", "arvla_action_expert", "arvla_data",
                   "arvla_baselines", "arvla_eval", "arvla"]

CONSOLE_SCRIPTS = [
    "arvla = arvla.cli:main",
    "perception_node = arvla_perception.node:main",
    "action_expert_node = arvla_action_expert.node:main",
    "sim_node = arvla_sim.node:main",
]

setup(
    name=PACKAGE,
    version=_version_from_package_xml(),
    packages=find_packages(include=[f"{p}{s}" for p in PYTHON_PACKAGES for s in ("", ".*")]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob.glob("launch/*.py")),
        ("share/" + PACKAGE + "/config", glob.glob("config/*.yaml")),
        ("share/" + PACKAGE + "/config/examples", glob.glob("config/examples/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="arvla maintainers",
    maintainer_email="maintainers@arvla.dev",
    description="AR-VLA on ROS 2: perception node + autoregressive action expert.",
    license="Apache-2.0",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
