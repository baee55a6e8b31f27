"""One step with the Hybrid KV cache == the whole-sequence forward with the sliding-window mask.

The whole-sequence forward is what training runs; the cached step is what the robot runs. They
must agree to fp32 round-off across ring wrap-around, several prefix refreshes, step-index jumps
and speculative lookahead, or the robot would run a different model than the one trained.
"""

from __future__ import annotations

import pytest
import torch

from arvla_action_expert.cache import CacheError, HybridKVCache
from arvla_action_expert.model import ARExpert, ExpertConfig, PrefixBatch
from core_helpers import tiny_config

ATOL = 1e-5


def tiny(**kw) -> ExpertConfig:
    return tiny_config(**{"n_layer": 3, **kw})


def make(config: ExpertConfig, seed: int = 0) -> tuple[ARExpert, HybridKVCache]:
    torch.manual_seed(seed)
    model = ARExpert(config).eval()
    c = config
    cache = HybridKVCache(c.n_layer, c.n_head, c.head_dim, c.window, c.max_prefix_tokens, 4)
    return model, cache


def run_cached(model, cache, states, prevs, positions, refreshes):
    """Step through tokens; ``refreshes`` maps token index -> (tokens (1,N,P), capture_step)."""
    outs = []
    with torch.no_grad():
        for t in range(states.shape[1]):
            if t in refreshes:
                tok, cap = refreshes[t]
                kv, _ = model.encode_prefix(tok, torch.tensor([cap]))
                cache.set_prefix(kv, cap)
            cache.begin_step(int(positions[0, t]), commit=True)
            outs.append(model.step(states[:, t:t + 1], positions[:, t:t + 1], cache,
                                   prev=None if prevs is None else prevs[:, t:t + 1]))
            cache.end_step()
    return torch.cat(outs, dim=1)


def reference(model, states, prevs, positions, refreshes):
    """Whole sequence at once: each token sees the prefix current at its step."""
    T = states.shape[1]
    starts = sorted(refreshes)
    assign = torch.full((1, T), -1, dtype=torch.int64)
    for f, s in enumerate(starts):
        assign[0, s:] = f
    prefix = None
    if starts:
        n = refreshes[starts[0]][0].shape[1]
        tokens = torch.stack([refreshes[s][0][0] for s in starts]).unsqueeze(0)  # (1,F,N,P)
        assert all(refreshes[s][0].shape[1] == n for s in starts)
        capture = torch.tensor([[refreshes[s][1] for s in starts]])
        prefix = PrefixBatch(tokens, capture, assign)
    with torch.no_grad():
        out, _ = model(states, positions, prev=prevs, prefix=prefix)
    return out


@pytest.mark.parametrize("use_prev,predict_steps,prefix_kv,rope_dims", [
    (False, 1, "layerwise", 0), (True, 1, "layerwise", 0), (False, 4, "layerwise", 0),
    (False, 1, "final", 0), (False, 1, "layerwise", 4)])
@pytest.mark.parametrize("head", ["regression", "binned"])
def test_cached_steps_match_full_forward_across_wraparound_and_refreshes(use_prev, head,
                                                                         predict_steps, prefix_kv,
                                                                         rope_dims):
    c = tiny(use_prev_action=use_prev, head=head, n_bins=11, predict_steps=predict_steps,
             prefix_kv=prefix_kv, rope_dims=rope_dims)
    model, cache = make(c)
    g = torch.Generator().manual_seed(1)
    T = 3 * c.window + 2  # wraps the ring several times
    states = torch.randn(1, T, c.state_dim, generator=g)
    prevs = torch.randn(1, T, c.action_dim, generator=g) if use_prev else None
    positions = torch.arange(T).view(1, T) + 40  # episodes need not start at 0
    refreshes = {t: (torch.randn(1, 4, c.prefix_dim, generator=g), 40 + t - lag)
                 for t, lag in ((2, 0), (9, 3), (15, 1), (22, 6))}
    got = run_cached(model, cache, states, prevs, positions, refreshes)
    want = reference(model, states, prevs, positions, refreshes)
    assert cache.fill == c.window
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_step_index_jumps_follow_the_step_window_not_the_token_count():
    c = tiny()
    model, cache = make(c)
    g = torch.Generator().manual_seed(2)
    pos = torch.tensor([[0, 1, 2, 5, 6, 11, 12, 13, 20, 21, 22, 23]])  # late ticks skip steps
    states = torch.randn(1, pos.shape[1], c.state_dim, generator=g)
    refreshes = {0: (torch.randn(1, 3, c.prefix_dim, generator=g), 0)}
    got = run_cached(model, cache, states, None, pos, refreshes)
    want = reference(model, states, None, pos, refreshes)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_speculative_lookahead_matches_forward_and_leaves_memory_unchanged():
    c = tiny()
    model, cache = make(c)
    g = torch.Generator().manual_seed(3)
    T, k = 10, 3
    states = torch.randn(1, T + k, c.state_dim, generator=g)
    pos = torch.arange(T + k).view(1, -1)
    refreshes = {1: (torch.randn(1, 5, c.prefix_dim, generator=g), 0)}
    run_cached(model, cache, states[:, :T], None, pos[:, :T], refreshes)
    spec = []
    with torch.no_grad():
        for j in range(k):
            cache.begin_step(T + j, commit=False)
            spec.append(model.step(states[:, T + j:T + j + 1], pos[:, T + j:T + j + 1], cache))
            cache.end_step()
    cache.end_lookahead()
    want = reference(model, states, None, pos, refreshes)
    torch.testing.assert_close(torch.cat(spec, 1), want[:, T:], atol=ATOL, rtol=0)
    # committing step T after the lookahead gives the same as if no lookahead had happened
    other = torch.randn(1, 1, c.state_dim, generator=g)
    with torch.no_grad():
        cache.begin_step(T, commit=True)
        got = model.step(other, pos[:, T:T + 1], cache)
        cache.end_step()
    seq = torch.cat([states[:, :T], other], 1)
    want2 = reference(model, seq, None, pos[:, :T + 1], refreshes)[:, T:]
    torch.testing.assert_close(got, want2, atol=ATOL, rtol=0)


def test_shifting_all_steps_and_capture_steps_leaves_outputs_unchanged():
    """RoPE relative property: only current_step - capture_step and step differences matter."""
    c = tiny()
    model, _ = make(c)
    g = torch.Generator().manual_seed(4)
    T = 12
    states = torch.randn(1, T, c.state_dim, generator=g)
    tok = torch.randn(1, 4, c.prefix_dim, generator=g)
    outs = []
    for shift in (0, 37, 100_003):
        pos = torch.arange(T).view(1, T) + shift
        refreshes = {3: (tok, shift + 1), 8: (tok * 0.5, shift + 6)}
        outs.append(reference(model, states, None, pos, refreshes))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[2], outs[0], atol=1e-4, rtol=0)
    # and the staleness is really seen: moving only the capture step changes the output
    pos = torch.arange(T).view(1, T)
    moved = reference(model, states, None, pos, {3: (tok, 1 - 4), 8: (tok * 0.5, 6 - 4)})
    assert (moved - outs[0]).abs().max() > 1e-4


def test_cache_preconditions_carry_numbers():
    c = tiny()
    _, cache = make(c)
    cache.begin_step(5, commit=True)
    cache.end_step()
    with pytest.raises(CacheError, match=r"step 5 does not follow the last committed step 5"):
        cache.begin_step(5, commit=True)
    with pytest.raises(CacheError, match="prefix has 9 tokens, the cache slot holds 5"):
        kv = [(torch.zeros(1, 4, 9, 8), torch.zeros(1, 4, 9, 8))] * 3
        cache.set_prefix(kv, 0)
    for j in range(4):
        cache.begin_step(6 + j, commit=False)
        cache.end_step()
    with pytest.raises(CacheError, match="lookahead of 5 steps exceeds the 4 scratch slots"):
        cache.begin_step(10, commit=False)
    with pytest.raises(CacheError, match="4 speculative steps still pending"):
        cache.begin_step(6, commit=True)
    cache.end_lookahead()
    cache.begin_step(6, commit=True)
    cache.end_step()
    assert cache.fill == 2 and cache.last_step == 6
    cache.reset()
    assert cache.fill == 0 and cache.last_step is None and cache.capture_step is None


def test_stream_training_batch_is_exactly_what_the_policy_computes():
    """Stage 2 in stream mode trains on the very computation ExpertPolicy runs: replaying a
    sample through the policy (frames installed when they arrive, one cached step per control
    step) gives the training forward's outputs token for token."""
    import numpy as np

    from arvla_action_expert.data import SampleBuilder, SampleSpec, synthetic_episodes
    from arvla_action_expert.policy import ExpertPolicy

    eps = synthetic_episodes(4, steps=30, state_dim=2, prefix_dim=8, frame_every=3)
    config = tiny(state_dim=2, action_dim=2, prefix_dim=8, window=64, head="regression")
    b = SampleBuilder(eps, delta_actions=False)
    spec = SampleSpec(history=20, chunk=10, max_staleness=3, prefix_mode="stream", frame_drop=0.2)
    batch = b.stage2_batch(6, spec, torch.Generator().manual_seed(3))
    policy = ExpertPolicy.build_untrained(config, seed=1)
    policy.state_norm, policy.target_norm = b.state_norm, b.target_norm
    model = policy.model.eval()
    with torch.no_grad():
        out, _ = model(batch["states"], batch["positions"],
                       prefix=PrefixBatch(batch["tokens"], batch["capture"], batch["assign"]),
                       step_mask=batch["valid"].unsqueeze(1) | torch.eye(30, dtype=torch.bool))
    checked = 0
    for i in range(6):
        ep = eps[int(batch["episode"][i])]
        policy.reset()
        shown = -1
        for j in torch.nonzero(batch["valid"][i]).flatten().tolist():
            a = int(batch["assign"][i, j])
            if a != shown:
                policy.refresh_prefix(batch["tokens"][i, a].numpy(), int(batch["capture"][i, a]))
                shown = a
            t = int(batch["positions"][i, j])
            action = policy.step(ep.states[t], t)[0]
            expected = b.target_norm.denormalize(out[i, j].numpy())
            np.testing.assert_allclose(action, expected, atol=2e-5)
            checked += 1
    assert checked > 30
