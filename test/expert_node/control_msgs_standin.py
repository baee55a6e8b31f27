"""control_msgs for the gripper tests: the real package when importable, else a stand-in.

control_msgs is not on PyPI (this repo's ROS comes from the ros-* wheels). The stand-in is an
interface package named control_msgs holding the two interfaces the expert uses, with the same
fields as the real ones (``msg/GripperCommand``: position, max_effort; ``action/GripperCommand``:
goal ``command``, result and feedback position / effort / stalled / reached_goal), built with
colcon like arvla_msgs (~30 s once; cached under build/test_control_msgs/<hash>) and loaded
into the test process. The node's code path (``from control_msgs.action import
GripperCommand``, rclpy's ActionClient) is then the one it takes on a real ROS install.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

FILES = {
    "package.xml": """<?xml version="1.0"?>
<package format="3">
  <name>control_msgs</name>
  <version>0.0.0</version>
  <description>Test stand-in: the GripperCommand interfaces of control_msgs, same fields.</description>
  <maintainer email="maintainers@arvla.dev">arvla maintainers</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>action_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
""",
    "CMakeLists.txt": """cmake_minimum_required(VERSION 3.8)
project(control_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(action_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/GripperCommand.msg" "action/GripperCommand.action"
  DEPENDENCIES action_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
""",
    "msg/GripperCommand.msg": "float64 position\nfloat64 max_effort\n",
    "action/GripperCommand.action": ("GripperCommand command\n---\n"
                                     "float64 position\nfloat64 effort\nbool stalled\nbool reached_goal\n---\n"
                                     "float64 position\nfloat64 effort\nbool stalled\nbool reached_goal\n"),
}
_LIBS = ("rosidl_generator_c", "rosidl_typesupport_c", "rosidl_typesupport_cpp",
         "rosidl_typesupport_introspection_c", "rosidl_typesupport_introspection_cpp",
         "rosidl_typesupport_fastrtps_c", "rosidl_typesupport_fastrtps_cpp", "rosidl_generator_py")


def _build(work: pathlib.Path) -> pathlib.Path:
    """colcon build of the stand-in in ``work`` (once; a lock keeps parallel runs apart)."""
    install = work / "install" / "control_msgs"
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (work / "done").is_file():
            return install
        if shutil.which("colcon") is None:
            pytest.skip("colcon is not installed: cannot build the control_msgs stand-in")
        for rel, text in FILES.items():
            path = work / "src" / "control_msgs" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        env = dict(os.environ)
        for key in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
            env[key] = sys.prefix + (":" + env[key] if env.get(key) else "")
        cmd = ["colcon", "build", "--base-paths", "src", "--cmake-args", "-DBUILD_TESTING=OFF",
               f"-DPython3_EXECUTABLE={sys.executable}"]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"building the control_msgs stand-in failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        (work / "done").write_text("ok\n")
    return install


def ensure_control_msgs() -> str:
    """Make ``control_msgs.action.GripperCommand`` importable here; returns 'real' or 'stand-in'."""
    try:
        import control_msgs.action  # noqa: F401

        return "real"
    except ImportError:
        pass
    digest = hashlib.sha256("".join(f"{k}\n{v}" for k, v in sorted(FILES.items())).encode()).hexdigest()[:12]
    install = _build(ROOT / "build" / "test_control_msgs" / digest)
    lib = install / "lib"
    # The generated Python extension links the package's C libraries; this process's loader does not
    # look in a folder added to LD_LIBRARY_PATH after start, so load them first (rmw's own lookup
    # of the type support does read the environment, hence both).
    for name in _LIBS:
        ctypes.CDLL(str(lib / f"libcontrol_msgs__{name}.so"), mode=ctypes.RTLD_GLOBAL)
    os.environ["LD_LIBRARY_PATH"] = f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}"
    os.environ["AMENT_PREFIX_PATH"] = f"{install}:{os.environ.get('AMENT_PREFIX_PATH', '')}"
    sys.path.insert(0, str(next((lib).glob("python3*/site-packages"))))
    import control_msgs.action  # noqa: F401,F811

    return "stand-in"
