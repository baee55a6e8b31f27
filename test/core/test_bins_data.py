"""Action bins round trip; episode files and their validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arvla_action_expert.bins import decode_bins, encode_bins, fit_bins, max_roundtrip_error
from arvla_action_expert.data import (Episode, EpisodeError, NpzEpisodeDir, SampleBuilder,
                                      SampleSpec, save_episode_npz, synthetic_episodes)


def test_bins_round_trip_within_half_the_widest_gap():
    g = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randn(5000, 3, generator=g) * 0.1,
                        torch.rand(5000, 3, generator=g) * 4 - 2])  # peaked + wide
    centers = fit_bins(values, 64)
    assert centers.shape == (3, 64) and (centers.diff(dim=1) > 0).all()
    bound = max_roundtrip_error(centers)
    rt = decode_bins(encode_bins(values, centers), centers)
    inside = (values >= centers[:, 0]) & (values <= centers[:, -1])
    assert inside.float().mean() > 0.97
    err = ((rt - values).abs() * inside).max(dim=0).values
    assert (err <= bound + 1e-6).all(), (err, bound)
    # beyond the end centres the error is the distance to the end centre
    outside = ((rt - values).abs() * ~inside).max(dim=0).values
    reach = torch.maximum(centers[:, 0] - values.min(0).values, values.max(0).values - centers[:, -1])
    assert (outside <= reach + 1e-6).all()
    assert (bound < 0.2).all()  # stated error: 64 k-means bins over [-2, 2] stay below 0.2
    # k-means puts more bins where the data is dense: the centre gaps near 0 are the smallest
    gaps = centers.diff(dim=1)
    mid = centers[:, :-1].abs().argmin(dim=1)
    assert (gaps[torch.arange(3), mid] < gaps.median(dim=1).values).all()
    # outside the range values clip to the end centres
    far = torch.tensor([[10.0, -10.0, 0.0]])
    out = decode_bins(encode_bins(far, centers), centers)
    assert out[0, 0] == centers[0, -1] and out[0, 1] == centers[1, 0]


def test_bins_of_a_constant_dim_stay_distinct():
    c = fit_bins(torch.zeros(100, 1), 8)
    assert (c.diff(dim=1) > 0).all()


def test_npz_episode_round_trip(tmp_path):
    ep = synthetic_episodes(1, steps=20, state_dim=3, prefix_dim=5, seed=3)[0]
    ep.images = np.zeros((len(ep.frame_steps), 4, 4, 3), np.uint8)
    save_episode_npz(tmp_path / "a.npz", ep)
    src = NpzEpisodeDir(tmp_path)
    back = src[0]
    assert len(src) == 1 and back.name == "a.npz"
    for k in ("states", "actions", "frame_tokens", "frame_steps", "images"):
        np.testing.assert_array_equal(getattr(back, k), getattr(ep, k))
    assert (back.control_rate_hz, back.model_id, back.joint_names, back.task) == (
        ep.control_rate_hz, ep.model_id, ep.joint_names, ep.task)


def test_bad_episodes_name_the_field(tmp_path):
    s, a = np.zeros((10, 2)), np.zeros((9, 2))
    with pytest.raises(EpisodeError, match=r"actions must be \(10, action_dim\), got \(9, 2\)"):
        Episode(s, a, np.zeros((1, 2, 3)), np.array([0]), name="x")
    with pytest.raises(EpisodeError, match=r"frame_steps must increase within \[0, 10\)"):
        Episode(s, np.zeros((10, 2)), np.zeros((2, 2, 3)), np.array([4, 4]))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(EpisodeError, match="broken.npz: unreadable"):
        NpzEpisodeDir(tmp_path)[0]
    with pytest.raises(EpisodeError, match="no .npz episodes"):
        NpzEpisodeDir(tmp_path / "..").__class__(tmp_path / "empty") if (
            tmp_path / "empty").mkdir() is None else None


def test_stage2_samples_follow_the_frame_and_delay():
    eps = synthetic_episodes(4, steps=40, state_dim=2, prefix_dim=8)
    b = SampleBuilder(eps, delta_actions=False)
    spec = SampleSpec(history=5, chunk=4, max_staleness=3)
    batch = b.stage2_batch(64, spec, torch.Generator().manual_seed(0))
    cap = batch["capture"][:, 0]
    first_chunk = batch["positions"][:, spec.history]
    delay = first_chunk - cap
    assert ((delay >= 0) & (delay <= 3)).all() and len(set(delay.tolist())) > 1
    assert (batch["assign"][:, :spec.history] == -1).all()  # history does not see the prefix
    assert (batch["assign"][:, spec.history:][batch["valid"][:, spec.history:]] == 0).all()
    # padding before the episode start is marked invalid and carries no loss
    pad = batch["positions"] < 0
    assert pad.any() and not batch["valid"][pad].any() and (batch["weight"][pad] == 0).all()


def test_stream_samples_are_what_the_cache_sees():
    """Stream mode: every valid step sees the newest frame that had arrived (capture + delay),
    steps before the first arrival are padding, and frames may be dropped."""
    eps = synthetic_episodes(6, steps=40, state_dim=2, prefix_dim=8, frame_every=4)
    b = SampleBuilder(eps, delta_actions=False)
    spec = SampleSpec(history=12, chunk=8, max_staleness=3, prefix_mode="stream", frame_drop=0.3)
    batch = b.stage2_batch(128, spec, torch.Generator().manual_seed(0))
    valid, assign, pos = batch["valid"], batch["assign"], batch["positions"]
    assert (assign[~valid] == -1).all() and (assign[valid] >= 0).all()
    cap = torch.gather(batch["capture"], 1, assign.clamp_min(0))  # capture step of each step's frame
    age = pos - cap
    assert (age[valid] >= 0).all()
    # one delay per sample: the age drops to the same minimum wherever a new frame arrives
    new = valid[:, 1:] & valid[:, :-1] & (assign[:, 1:] != assign[:, :-1])
    delay = torch.where(new, age[:, 1:], 99).min(1).values
    has = new.any(1)
    assert ((delay[has] >= 0) & (delay[has] <= 3)).all() and len(set(delay[has].tolist())) > 1
    ages_at_arrival = age[:, 1:][new]
    assert (ages_at_arrival == delay.unsqueeze(1).expand_as(new)[new]).all()
    # frames are dropped sometimes: some gaps between arrivals exceed the frame period
    assert (age[valid] >= 4 + 3).any()
    # tokens of each used frame are that episode's frame at that capture step
    for i in range(8):
        ep = eps[int(batch["episode"][i])]
        for a in assign[i][valid[i]].unique().tolist():
            f = int(np.searchsorted(ep.frame_steps, int(batch["capture"][i, a])))
            assert np.allclose(batch["tokens"][i, a].numpy(), ep.frame_tokens[f])
