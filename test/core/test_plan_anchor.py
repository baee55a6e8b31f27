"""``plan_anchor: current``: multi-token targets re-anchored at the predicting token's state
(token t trained on action[t+k] - state[t]), so a token carries where the arm is to be, not k
copies of the current tracking lag."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arvla_base.config import ConfigError
from arvla_base.episode import Episode
from arvla_action_expert.data import InMemoryEpisodes, SampleBuilder
from arvla_action_expert.model import ARExpert
from core_helpers import tiny_config as tiny


def _episodes(T: int = 12, D: int = 2, seed: int = 0) -> InMemoryEpisodes:
    rng = np.random.default_rng(seed)
    return InMemoryEpisodes([Episode(states=rng.normal(size=(T, D)), actions=rng.normal(size=(T, D)),
                                     frame_tokens=np.zeros((0, 1, 4)), frame_steps=np.zeros(0),
                                     name=f"e{i}") for i in range(2)])


def test_anchored_targets_are_the_normalised_motion_from_the_token_state():
    src = _episodes()
    b = SampleBuilder(src, delta_actions=True, anchors=True)
    it = b._window(0, 0, 12)
    ep = src[0]
    t, k = 3, 5
    got = it["target"][t + k] + it["anchor"][t + k] - it["anchor"][t]
    want = b.target_norm.normalize((ep.actions[t + k] - ep.states[t])[None])[0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    # only asked for (a plan_anchor "current" model), and only for delta targets
    assert "anchor" not in SampleBuilder(src, delta_actions=True)._window(0, 0, 12)
    with pytest.raises(ValueError, match="delta_actions"):
        SampleBuilder(src, delta_actions=False, anchors=True)


def test_current_anchor_loss_rescores_the_future_steps_only():
    torch.manual_seed(0)
    K, B, T, A = 3, 2, 6, 2
    out, target = torch.randn(B, T, K, A), torch.randn(B, T, A)
    anchor = torch.randn(B, T, A) * 5
    weight = torch.ones(B, T)
    weight[0, :2] = 0
    own = ARExpert(tiny(predict_steps=K, state_dim=2, delta_actions=True))
    cur = ARExpert(tiny(predict_steps=K, state_dim=2, delta_actions=True, plan_anchor="current"))
    num = den = 0.0
    for k in range(K):
        w = weight[:, :T - k] * weight[:, k:]
        tk = target[:, k:] + (anchor[:, k:] - anchor[:, :T - k] if k else 0)
        scale = max(float((tk.abs().mean(-1) * w).sum() / w.sum()), 1.0) if k else 1.0
        num += float(((out[:, :T - k, k] - tk).abs().mean(-1) / scale * w).sum())
        den += float(w.sum())
    assert cur.loss(out, target, weight, anchor).item() == pytest.approx(num / den, rel=1e-5)
    # "own" ignores the anchor: every step's own delta
    assert own.loss(out, target, weight, anchor).item() == pytest.approx(
        own.loss(out, target, weight).item())
    with pytest.raises(ValueError, match="anchor"):
        cur.loss(out, target, weight)


def test_uniform_plan_weight_scores_every_step_in_target_units():
    """``plan_weight: uniform``: the plain L1 of the re-anchored targets, every k alike (as the
    node's mean of the last plans weighs them); far steps, whose targets are large, then weigh
    more than under ``relative``."""
    torch.manual_seed(1)
    K, B, T, A = 4, 2, 7, 2
    out, target = torch.randn(B, T, K, A), torch.randn(B, T, A)
    anchor = torch.cumsum(torch.randn(B, T, A), dim=1) * 3   # a moving arm: far targets grow
    weight = torch.ones(B, T)
    weight[1, -2:] = 0
    kw = dict(predict_steps=K, state_dim=2, delta_actions=True, plan_anchor="current")
    uni = ARExpert(tiny(plan_weight="uniform", **kw))
    rel = ARExpert(tiny(**kw))
    num = den = 0.0
    for k in range(K):
        w = weight[:, :T - k] * weight[:, k:]
        tk = target[:, k:] + (anchor[:, k:] - anchor[:, :T - k] if k else 0)
        num += float(((out[:, :T - k, k] - tk).abs().mean(-1) * w).sum())
        den += float(w.sum())
    assert uni.loss(out, target, weight, anchor).item() == pytest.approx(num / den, rel=1e-5)
    assert uni.loss(out, target, weight, anchor).item() > rel.loss(out, target, weight, anchor).item()
    # K = 1 has nothing to weigh: both read the same
    one = dict(kw, predict_steps=1)
    assert ARExpert(tiny(plan_weight="uniform", **one)).loss(out[:, :, 0], target).item() == \
        pytest.approx(ARExpert(tiny(**one)).loss(out[:, :, 0], target).item())
    with pytest.raises(ConfigError, match="plan_weight"):
        tiny(plan_weight="far")


def test_config_checks_name_the_key():
    with pytest.raises(ConfigError, match="plan_anchor"):
        tiny(plan_anchor="later")
    with pytest.raises(ConfigError, match="plan_anchor.*delta_actions"):
        tiny(plan_anchor="current", state_dim=2, delta_actions=False)


def test_ensembling_moves_older_plans_onto_the_state_now():
    """Token s predicted action[t] - state[s]; blended at step t it must read action[t] -
    state[t]: a model whose every prediction is the same absolute point commands that point
    whatever the ensemble."""
    from arvla_action_expert.normalize import Normalizer
    from arvla_action_expert.policy import ExpertPolicy

    c = tiny(predict_steps=4, state_dim=2, delta_actions=True, plan_anchor="current")
    norm = Normalizer(mean=np.zeros(2, np.float32), std=np.array([0.5, 2.0], np.float32))
    policy = ExpertPolicy(ARExpert(c), state_norm=norm, target_norm=norm, control_rate_hz=20.0)
    policy.ensemble_steps = 4
    goal = np.array([1.0, -3.0])
    states = {s: np.array([0.1 * s, 0.3 - 0.2 * s]) for s in range(6)}
    for s, state in states.items():
        # what a model that always aims at ``goal`` predicts at token s, for steps s .. s+3
        plan = np.stack([(goal - state) / norm.std] * 4).astype(np.float32)
        got = policy._blend(s, plan, commit=True, anchor=policy._anchor(state))
        np.testing.assert_allclose(norm.denormalize(got) + state, goal, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="plan_anchor.*regression"):
        tiny(plan_anchor="current", state_dim=2, delta_actions=True, head="binned")


def test_training_builds_the_anchors_a_current_anchor_model_needs(tmp_path):
    """Both stages, from scratch and from the stage-1 checkpoint: the trainer asks the sample
    builder for anchors (without them the loss refuses)."""
    import dataclasses

    from arvla_base.config import load_config
    from arvla_action_expert.train import TrainConfig, train
    from arvla_base.paths import config_file

    cfg = load_config(TrainConfig, config_file("expert_tiny.yaml"))
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, head="regression", delta_actions=True,
                                       predict_steps=4, plan_anchor="current"),
        optim=dataclasses.replace(cfg.optim, max_steps=3, warmup_steps=1))
    r1 = train(cfg, stage=1, out=tmp_path / "s1", progress=False)
    r2 = train(cfg, stage=2, out=tmp_path / "s2", init=tmp_path / "s1", progress=False)
    assert np.isfinite(r1.losses + r2.losses).all() and len(r2.losses) == 3


@pytest.mark.parametrize("kind", ["l2", "huber"])
def test_regression_loss_scores_the_scaled_errors(kind):
    """``regression_loss`` l2 / huber: the same (token, k) pairs and relative scales as L1, the
    loss of the errors divided by each k's scale (so "relative" weighs k alike for every loss);
    L1 stays the default and is unchanged."""
    torch.manual_seed(2)
    K, B, T, A = 3, 2, 6, 2
    out, target = torch.randn(B, T, K, A) * 2, torch.randn(B, T, A)
    anchor = torch.cumsum(torch.randn(B, T, A), dim=1) * 3
    weight = torch.ones(B, T)
    weight[0, :1] = 0
    kw = dict(predict_steps=K, state_dim=2, delta_actions=True, plan_anchor="current")
    model = ARExpert(tiny(regression_loss=kind, huber_delta=0.5, **kw))

    def elementwise(e: torch.Tensor) -> torch.Tensor:
        if kind == "l2":
            return e.square()
        return torch.where(e.abs() <= 0.5, 0.5 * e.square(), 0.5 * (e.abs() - 0.25))

    num = den = 0.0
    for k in range(K):
        w = weight[:, :T - k] * weight[:, k:]
        tk = target[:, k:] + (anchor[:, k:] - anchor[:, :T - k] if k else 0)
        scale = max(float((tk.abs().mean(-1) * w).sum() / w.sum()), 1.0) if k else 1.0
        num += float((elementwise((out[:, :T - k, k] - tk) / scale).mean(-1) * w).sum())
        den += float(w.sum())
    assert model.loss(out, target, weight, anchor).item() == pytest.approx(num / den, rel=1e-5)
    # one step per token: the plain loss of the errors
    one = ARExpert(tiny(regression_loss=kind, huber_delta=0.5, state_dim=2, delta_actions=True))
    want = float(elementwise(out[:, :, 0] - target).mean())
    assert one.loss(out[:, :, 0], target).item() == pytest.approx(want, rel=1e-5)


def test_regression_loss_checks_name_the_key():
    with pytest.raises(ConfigError, match="regression_loss"):
        tiny(regression_loss="l3")
    with pytest.raises(ConfigError, match="regression_loss"):
        tiny(regression_loss="l2", head="binned")
    with pytest.raises(ConfigError, match="huber_delta"):
        tiny(regression_loss="huber", head="regression", huber_delta=0.0)
