"""Quintic motion segments: rest-to-rest minimum-jerk moves (Flash & Hogan, 1985), or from any
position, velocity and acceleration to rest. ROS-free; used by the scripted demonstrators
(``arvla_sim.experts``) and by the memory task's arm lock (``arvla_sim.env``)."""

from __future__ import annotations

import numpy as np

# Peak |acceleration| of a rest-to-rest quintic over distance d in time T: 10 / sqrt(3) * d / T^2.
PEAK_ACCEL_FACTOR = 10.0 / np.sqrt(3.0)
# Peak speed of the same move: 15 / 8 * d / T.
PEAK_SPEED_FACTOR = 1.875


def quintic(p0: np.ndarray, v0: np.ndarray, a0: np.ndarray, p1: np.ndarray, T: float) -> np.ndarray:
    """Coefficients (6, ...) of p(t) = sum_k c_k t^k leaving ``p0`` with velocity ``v0`` and
    acceleration ``a0`` and coming to rest at ``p1`` at time ``T`` > 0 (zero velocity and
    acceleration there); from rest, the minimum-jerk move."""
    if not T > 0:
        raise ValueError(f"quintic: duration must be > 0, got {T}")
    p0, v0, a0, p1 = (np.asarray(x, dtype=np.float64) for x in (p0, v0, a0, p1))
    h = p1 - p0
    return np.stack([p0, v0, 0.5 * a0,
                     (20 * h - 12 * v0 * T - 3 * a0 * T**2) / (2 * T**3),
                     (-30 * h + 16 * v0 * T + 3 * a0 * T**2) / (2 * T**4),
                     (12 * h - 6 * v0 * T - a0 * T**2) / (2 * T**5)])


def min_jerk_fraction(tau: float) -> float:
    """Fraction of a rest-to-rest minimum-jerk move done at normalised time ``tau`` (clipped to
    [0, 1]): 10 tau^3 - 15 tau^4 + 6 tau^5, the quintic of ``quintic`` from rest over distance 1
    in time 1."""
    tau = min(max(float(tau), 0.0), 1.0)
    return tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)


def quintic_at(c: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, velocity, acceleration) of the quintic with coefficients ``c`` at time ``t``."""
    p = c[0] + t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * c[5]))))
    v = c[1] + t * (2 * c[2] + t * (3 * c[3] + t * (4 * c[4] + t * 5 * c[5])))
    a = 2 * c[2] + t * (6 * c[3] + t * (12 * c[4] + t * 20 * c[5]))
    return p, v, a
