"""joint_trajectory_controller semantics of the pure-Python follower (arvla_sim.jtc)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arvla_sim.jtc import JointTrajectoryFollower, TrajPoint

S = 1_000_000_000
NAMES = ("a", "b")


def follower(p0=(0.0, 0.0)) -> JointTrajectoryFollower:
    return JointTrajectoryFollower(NAMES, p0)


def test_linear_interpolation_and_hold_at_end():
    f = follower()
    ok, why = f.set_trajectory(NAMES, [TrajPoint([1.0, -2.0], 1 * S)], stamp_ns=0, now_ns=10 * S)
    assert ok, why
    pos, vel = f.sample(10 * S + S // 4)
    np.testing.assert_allclose(pos, [0.25, -0.5])
    np.testing.assert_allclose(vel, [1.0, -2.0])
    assert f.is_active(10 * S + S // 2)
    pos, vel = f.sample(25 * S)     # long after the end: hold the last point, at rest
    np.testing.assert_allclose(pos, [1.0, -2.0])
    np.testing.assert_allclose(vel, [0.0, 0.0])
    assert not f.is_active(25 * S)


def test_cubic_when_velocities_given():
    f = follower()
    pts = [TrajPoint([1.0, 0.0], 1 * S, velocities=[0.0, 0.0]),
           TrajPoint([2.0, 1.0], 2 * S, velocities=[0.0, 0.0])]
    assert f.set_trajectory(NAMES, pts, stamp_ns=0, now_ns=0)[0]
    # Rest-to-rest cubic Hermite: smoothstep 3s^2 - 2s^3; at s = 1/4 -> 0.15625 of the step.
    pos, vel = f.sample(S + S // 4)
    np.testing.assert_allclose(pos, [1.15625, 0.15625])
    assert vel[0] == pytest.approx(6 * 0.25 * 0.75)       # d/ds = 6 s (1 - s), segment 1 s
    pos, vel = f.sample(S)          # passes through the knot with the given velocity
    np.testing.assert_allclose(pos, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(vel, [0.0, 0.0], atol=1e-12)


def test_new_message_replaces_running_trajectory_from_current_command():
    f = follower()
    assert f.set_trajectory(NAMES, [TrajPoint([1.0, 1.0], 1 * S)], stamp_ns=0, now_ns=0)[0]
    mid, _ = f.sample(S // 2)
    np.testing.assert_allclose(mid, [0.5, 0.5])
    assert f.set_trajectory(NAMES, [TrajPoint([-1.0, 0.5], 1 * S)], stamp_ns=0, now_ns=S // 2)[0]
    # Starts from where the old command was at arrival, never jumps; old goal is forgotten.
    np.testing.assert_allclose(f.sample(S // 2)[0], [0.5, 0.5])
    np.testing.assert_allclose(f.sample(S)[0], [-0.25, 0.5])
    np.testing.assert_allclose(f.sample(3 * S)[0], [-1.0, 0.5])


def test_stamped_start_drops_points_already_past():
    f = follower()
    pts = [TrajPoint([9.0, 9.0], int(0.2 * S)), TrajPoint([8.0, 8.0], int(0.4 * S)),
           TrajPoint([1.0, 2.0], int(0.8 * S)), TrajPoint([3.0, 4.0], int(1.0 * S))]
    now = 10 * S
    assert f.set_trajectory(NAMES, pts, stamp_ns=now - S // 2, now_ns=now)[0]
    # The 9s and 8s were due before "now": never commanded. Next target: point 3 at now + 0.3 s.
    samples = [f.sample(now + k * S // 100)[0] for k in range(0, 60)]
    assert max(float(np.max(s)) for s in samples) <= 4.0 + 1e-9
    np.testing.assert_allclose(f.sample(now + int(0.3 * S))[0], [1.0, 2.0])
    np.testing.assert_allclose(f.sample(now + S)[0], [3.0, 4.0])


def test_joint_order_is_by_name():
    f = follower()
    assert f.set_trajectory(("b", "a"), [TrajPoint([2.0, 1.0], S)], stamp_ns=0, now_ns=0)[0]
    np.testing.assert_allclose(f.sample(2 * S)[0], [1.0, 2.0])


@pytest.mark.parametrize("names, points, match", [
    (("a", "c"), [TrajPoint([1, 1], S)], "unknown joint"),
    (("a",), [TrajPoint([1], S)], "missing joint"),
    (("a", "a"), [TrajPoint([1, 1], S)], "duplicate"),
    (NAMES, [], "no points"),
    (NAMES, [TrajPoint([1, 1, 1], S)], "3 positions for 2 joints"),
    (NAMES, [TrajPoint([1, 1], S, velocities=[1.0])], "1 velocities"),
    (NAMES, [TrajPoint([1, math.nan], S)], "non-finite"),
    (NAMES, [TrajPoint([1, 1], S, velocities=[math.inf, 0])], "non-finite"),
    (NAMES, [TrajPoint([1, 1], S), TrajPoint([2, 2], S)], "strictly increase"),
    (NAMES, [TrajPoint([1, 1], 2 * S), TrajPoint([2, 2], S)], "strictly increase"),
    (NAMES, [TrajPoint([1, 1], -1)], "negative"),
])
def test_malformed_messages_are_rejected_and_keep_current_trajectory(names, points, match):
    f = follower()
    assert f.set_trajectory(NAMES, [TrajPoint([1.0, 1.0], S)], stamp_ns=0, now_ns=0)[0]
    before = f.sample(S // 2)[0]
    ok, reason = f.set_trajectory(names, points, stamp_ns=0, now_ns=S // 4)
    assert not ok
    assert match in reason
    assert f.rejected == 1 and f.last_reject_reason == reason
    np.testing.assert_allclose(f.sample(S // 2)[0], before)


def test_all_points_in_the_past_is_rejected():
    f = follower()
    ok, reason = f.set_trajectory(NAMES, [TrajPoint([1, 1], S)], stamp_ns=5 * S, now_ns=7 * S)
    assert not ok and "past" in reason
    np.testing.assert_allclose(f.sample(8 * S)[0], [0.0, 0.0])
