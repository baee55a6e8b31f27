"""Fault suite plumbing: the session ledger, its end-of-run summary, a crash-counting executor.

- ``ledger`` (session scope): the one ``faultlib.LEDGER`` the tests report into.
- ``executor`` (overrides test/conftest.py's): a SingleThreadedExecutor whose ``spin_once``
  records any exception a node callback raises as a crash before re-raising it.
- ``pytest_terminal_summary`` prints inputs tried / faults injected / crashes / unsafe commands;
  ``pytest_sessionfinish`` turns a non-zero crash or unsafe-command count into a failed session
  even if every test passed (a test that forgot to assert cannot hide a crash).
- ``expert_rig``: the action expert node in-process behind test/expert_node's harness (manual
  /clock, fake JTC) plus the independent ``SafetyMonitor`` on its trajectory topic.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import pytest

HERE = pathlib.Path(__file__).resolve().parent
for extra in (HERE, HERE.parent / "expert_node"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from faultlib import LEDGER, SafetyMonitor  # noqa: E402


@pytest.fixture(scope="session")
def ledger():
    return LEDGER


@pytest.fixture
def executor(ros_context):
    """Like test/conftest.py's executor, but a callback that raises is counted as a crash."""
    from rclpy.executors import SingleThreadedExecutor

    class GuardedExecutor(SingleThreadedExecutor):
        def spin_once(self, timeout_sec: float | None = None) -> None:
            try:
                super().spin_once(timeout_sec=timeout_sec)
            except Exception as err:
                LEDGER.crash(f"node callback raised {type(err).__name__}: {err}")
                raise

    ex = GuardedExecutor(context=ros_context)
    yield ex
    for node in list(ex.get_nodes()):
        ex.remove_node(node)
        node.destroy_node()
    ex.shutdown()


@pytest.fixture
def expert_rig(ros_context, executor):
    """Factory: ``expert_rig(**node_params)`` -> (Harness, SafetyMonitor); monitor checked after."""
    from expert_harness import JOINTS, Harness, base_params

    made: list[SafetyMonitor] = []

    def make(**params: Any) -> tuple[Any, SafetyMonitor]:
        h = Harness(ros_context, executor, **params)
        p = base_params(**params)
        mon = SafetyMonitor(h.driver, "/arm_controller/joint_trajectory", joints=JOINTS,
                            lower=p["position_min"], upper=p["position_max"], vmax=p["max_velocity"])
        made.append(mon)
        return h, mon

    yield make
    for mon in made:
        assert mon.violations == [], mon.violations[:5]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not LEDGER.used:
        return
    terminalreporter.section("arvla fault suite")
    for line in LEDGER.summary_lines():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if LEDGER.crashes or LEDGER.unsafe:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
