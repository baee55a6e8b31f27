"""CollectConfig: DART noise settings are validated and spread evenly over the episodes."""

from __future__ import annotations

import pytest

from arvla_base.config import ConfigError
from arvla_eval.collect_ros import CollectConfig


@pytest.mark.parametrize("fraction, noisy", [(0.0, 0), (0.25, 5), (0.5, 10), (1.0, 20)])
def test_noisy_episodes_are_interleaved_evenly(fraction, noisy):
    cfg = CollectConfig(seeds=list(range(20)), noise_std=0.02, noisy_fraction=fraction)
    stds = [cfg.noise_for(i) for i in range(20)]
    assert sum(s > 0 for s in stds) == noisy and set(stds) <= {0.0, 0.02}
    if 0 < fraction < 1:   # never two long runs of one kind
        assert stds[:4].count(0.0) >= 1 and stds[:4].count(0.02) >= 1


def test_no_noise_by_default_and_bad_values_name_the_key():
    assert all(CollectConfig().noise_for(i) == 0.0 for i in range(10))
    with pytest.raises(ConfigError, match="noise_std"):
        CollectConfig(noise_std=-0.1)
    with pytest.raises(ConfigError, match="noisy_fraction"):
        CollectConfig(noisy_fraction=1.5)


def test_motion_profile_is_checked_and_reaches_the_demonstrator():
    from arvla_eval.collect_inprocess import Demonstrator

    with pytest.raises(ConfigError, match="motion_profile"):
        CollectConfig(motion_profile="s_curve")
    cfg = CollectConfig(task="pick_lift", prefixes="offline", motion_profile="min_jerk",
                        grasp_retries=2, sim={"image_height": 32, "image_width": 32})
    demo = Demonstrator(cfg)
    try:
        assert demo.expert.motion_profile == "min_jerk" and demo.expert.grasp_retries == 2
    finally:
        demo.close()


def test_grasp_retries_is_validated_and_keeps_earlier_cache_keys():
    from arvla_base.config import to_dict

    with pytest.raises(ConfigError, match="grasp_retries"):
        CollectConfig(grasp_retries=-1)
    plain = CollectConfig(seeds=[0, 1], noise_std=0.02)
    before = {k: v for k, v in to_dict(plain).items()               # the key before the settings
              if k not in ("grasp_retries", "speed_jitter")}
    assert plain.cache_key_dict() == before
    assert CollectConfig(seeds=[0, 1], noise_std=0.02, grasp_retries=2).cache_key_dict()["grasp_retries"] == 2


def test_speed_jitter_is_validated_reaches_the_demonstrator_and_keeps_earlier_cache_keys():
    from arvla_eval.collect_inprocess import Demonstrator

    with pytest.raises(ConfigError, match="speed_jitter"):
        CollectConfig(motion_profile="min_jerk", speed_jitter=2.0)
    with pytest.raises(ConfigError, match="speed_jitter"):
        CollectConfig(motion_profile="trapezoid", speed_jitter=0.5)
    assert "speed_jitter" not in CollectConfig(seeds=[0]).cache_key_dict()
    assert CollectConfig(seeds=[0], motion_profile="min_jerk",
                         speed_jitter=0.5).cache_key_dict()["speed_jitter"] == 0.5
    cfg = CollectConfig(task="push", prefixes="offline", motion_profile="min_jerk", speed_jitter=0.3,
                        sim={"image_height": 32, "image_width": 32})
    demo = Demonstrator(cfg)
    try:
        assert demo.expert.speed_jitter == 0.3
    finally:
        demo.close()
