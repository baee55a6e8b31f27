"""Single-slot latest-frame buffer and the node's statistics (no ROS)."""

from __future__ import annotations

import math
import threading

from arvla_perception.pipeline import LatestSlot, PerceptionStats


def test_slot_keeps_only_the_newest_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.dropped == 2
    assert slot.take(timeout=0.01) is None  # empty again


def test_slot_burst_against_a_slow_consumer_delivers_the_last_item():
    slot: LatestSlot[int] = LatestSlot()
    taken: list[int] = []
    first_taken = threading.Event()
    release = threading.Event()

    def consumer() -> None:
        item = slot.take(timeout=5)
        taken.append(item)
        first_taken.set()
        release.wait(5)  # a "slow model" busy with item 0
        taken.append(slot.take(timeout=5))

    t = threading.Thread(target=consumer)
    t.start()
    slot.put(0)
    assert first_taken.wait(5)
    for i in range(1, 51):
        slot.put(i)
    release.set()
    t.join(5)
    assert taken == [0, 50]
    assert slot.dropped == 49  # 1..49 were replaced while the consumer was busy


def test_close_wakes_a_waiting_take():
    slot: LatestSlot[int] = LatestSlot()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(slot.take(timeout=10)))
    t.start()
    slot.close()
    t.join(2)
    assert not t.is_alive() and result == [None] and slot.closed


def test_stats_rate_latency_and_counts():
    stats = PerceptionStats()
    assert [stats.frame_received() for _ in range(3)] == [1, 2, 3]
    first = stats.snapshot(now_s=10.0, dropped=0)
    assert math.isnan(first.latency_p50_s) and first.rate_hz == 0.0
    for lat in (0.1, 0.2, 0.3, 0.4):
        stats.prefix_published(lat, inference_s=lat / 2)
    stats.error()
    snap = stats.snapshot(now_s=12.0, dropped=5)
    assert (snap.received, snap.published, snap.errors, snap.dropped) == (3, 4, 1, 5)
    assert snap.rate_hz == 2.0  # 4 prefixes in 2 s
    assert abs(snap.latency_p50_s - 0.25) < 1e-12 and abs(snap.latency_max_s - 0.4) < 1e-12
    assert abs(snap.inference_p50_s - 0.125) < 1e-12
    assert stats.snapshot(now_s=13.0, dropped=5).rate_hz == 0.0  # nothing new since
