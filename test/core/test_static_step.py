"""The static-shape step (``ExpertPolicy.use_static_step``) equals the cache path.

``StaticStep`` runs a tick as device work of fixed shapes (what ``inference: cuda_graph``
captures): the step index, ring slot and mask come from device tensors, the ensemble blend and
the lookahead feedback happen on the device. Here it runs eagerly on the CPU and must give the
cache path's (``ExpertPolicy.step``) actions bit for bit in fp32: through ring wrap-around,
prefix refreshes of different lengths, an action-only stretch, step-index jumps (late ticks),
lookahead rows and ensemble_steps. On a CUDA host the captured graphs are checked against the
eager cache path on the same GPU, against the CPU, and in bf16 (skipped without CUDA).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arvla_action_expert.cache import CacheError
from arvla_action_expert.model import PrefixBatch
from arvla_action_expert.normalize import Normalizer
from arvla_action_expert.policy import ExpertPolicy
from core_helpers import tiny_config

HAVE_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="CUDA graphs need a CUDA device")

# bf16 tolerance, in action units (identity normalisers in the bf16 tests): weights,
# activations and KV cache in bfloat16 carry ~3 significant digits. Measured on the CPU with
# the bf16 config below: max |difference| 0.007 over 30 ticks x 5 rows of outputs up to 2.7.
BF16_ATOL = 0.05


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _config(**kw):
    base = dict(state_dim=3, action_dim=3, window=6, n_layer=2, head="binned", n_bins=11)
    base.update(kw)
    return tiny_config(**base)


def _policy(config, *, seed: int = 0, device: str = "cpu", norms: bool = True) -> ExpertPolicy:
    """Random weights; with ``norms`` non-trivial normalisers, so the device-side
    (de)normalisation is checked as well."""
    torch.manual_seed(seed)
    from arvla_action_expert.model import ARExpert

    model = ARExpert(config)
    rng = np.random.default_rng(seed)
    S, A = config.state_dim, config.action_dim
    state_norm, target_norm = Normalizer.identity(S), Normalizer.identity(A)
    if norms:
        state_norm = Normalizer(rng.normal(0, 0.5, S).astype(np.float32),
                                rng.uniform(0.5, 2.0, S).astype(np.float32))
        target_norm = Normalizer(rng.normal(0, 0.5, A).astype(np.float32),
                                 rng.uniform(0.5, 2.0, A).astype(np.float32))
    return ExpertPolicy(model, state_norm=state_norm, target_norm=target_norm,
                        control_rate_hz=20.0, device=device)


def _episode(policy: ExpertPolicy, *, ticks: int = 30, lookahead: int = 5, seed: int = 1
             ) -> np.ndarray:
    """A scripted episode: refreshes of 4, 2 and 5 tokens, an action-only stretch, step jumps
    (late ticks), a reset in the middle; every tick's (lookahead, A) rows, stacked."""
    rng = np.random.default_rng(seed)
    c = policy.config
    tokens = {n: rng.standard_normal((n, c.prefix_dim)).astype(np.float32) for n in (2, 4, 5)}
    steps = np.cumsum(rng.choice([1, 1, 1, 2, 3], size=ticks)) + 40  # episodes need not start at 0
    out, offset = [], 0
    for i, t in enumerate(steps):
        if i == 22:
            policy.reset()
            offset = int(t) - 3  # a new episode from step 3
        k = int(t) - offset
        if i == 2:
            policy.refresh_prefix(tokens[4], k - 1)
        elif i == 9:
            policy.refresh_prefix(tokens[2], k - 3)
        elif i == 14:
            policy.clear_prefix()
        elif i in (17, 22):
            policy.refresh_prefix(tokens[5 if i == 17 else 4], k - 2)
        state = rng.standard_normal(c.state_dim)
        out.append(policy.step(state, k, lookahead))
    return np.stack(out)


def _pair(config, *, ensemble: int = 1, norms: bool = True):
    eager, static = _policy(config, norms=norms), _policy(config, norms=norms)
    static.use_static_step()
    eager.ensemble_steps = static.ensemble_steps = ensemble
    return eager, static


@pytest.mark.parametrize("head", ["binned", "regression"])
@pytest.mark.parametrize("use_prev,delta,predict_steps,ensemble", [
    (False, False, 1, 1), (True, True, 1, 1), (False, True, 4, 4), (True, False, 4, 2),
    (False, False, 4, 1)])
def test_static_step_equals_the_cache_path_bit_for_bit(head, use_prev, delta, predict_steps,
                                                       ensemble):
    c = _config(head=head, use_prev_action=use_prev, delta_actions=delta,
                predict_steps=predict_steps)
    eager, static = _pair(c, ensemble=ensemble)
    a, b = _episode(eager), _episode(static)
    assert a.shape == (30, 5, c.action_dim)
    np.testing.assert_array_equal(b, a)
    assert static.cache_fill == eager.cache_fill == c.window  # the ring wrapped
    assert torch.equal(static.cache.k, eager.cache.k)  # committed memory identical too


@pytest.mark.parametrize("ensemble", [1, 3])
def test_static_step_equals_the_cache_path_for_plans_anchored_at_their_token(ensemble):
    """plan_anchor 'current': each older plan is moved onto the row's state before blending,
    on the device exactly as on the host."""
    c = _config(head="regression", delta_actions=True, predict_steps=4, plan_anchor="current")
    eager, static = _pair(c, ensemble=ensemble)
    np.testing.assert_array_equal(_episode(static), _episode(eager))


@pytest.mark.parametrize("anchor", ["own", "current"])
def test_static_step_weighs_the_ensemble_as_the_cache_path(anchor):
    """ensemble_m != 0: the device blend's weights are the host's (float32 against the host's
    float64 sums: equal to rounding); set before or after use_static_step, and back to 0 it is
    the plain mean again, bit for bit."""
    c = _config(head="regression", delta_actions=True, predict_steps=4, plan_anchor=anchor)
    eager, static = _pair(c, ensemble=4)
    eager.ensemble_m = static.ensemble_m = 0.5
    np.testing.assert_allclose(_episode(static), _episode(eager), rtol=1e-5, atol=1e-5)
    late = _policy(c)
    late.ensemble_steps, late.ensemble_m = 4, -0.3
    late.use_static_step()
    eager.reset()
    eager.ensemble_m = -0.3
    np.testing.assert_allclose(_episode(late), _episode(eager), rtol=1e-5, atol=1e-5)
    eager.reset()
    late.reset()
    eager.ensemble_m = late.ensemble_m = 0.0
    np.testing.assert_array_equal(_episode(late), _episode(eager))


def test_lookahead_counts_and_state_dims_that_differ():
    """Any lookahead from 1 to the maximum; a model whose state and action dims differ runs
    lookahead 1 only (as the cache path)."""
    eager, static = _pair(_config(predict_steps=2), ensemble=2)
    for t, look in enumerate([1, 33, 2, 7, 1, 3]):
        state = np.full(3, 0.1 * t)
        np.testing.assert_array_equal(static.step(state, t, look), eager.step(state, t, look))
    eager, static = _pair(_config(state_dim=4, action_dim=2))
    for t in range(8):
        state = np.linspace(-1, 1, 4) * t
        np.testing.assert_array_equal(static.step(state, t), eager.step(state, t))
    with pytest.raises(ValueError, match="needs state_dim"):
        static.step(np.zeros(4), 9, lookahead=2)


def test_committed_rows_equal_whole_window_recompute():
    """The static step against ``ARExpert.forward`` over the whole sequence (the training
    path) with the sliding-window mask: what the robot runs is what was trained."""
    c = _config(head="regression", window=5)
    p = _policy(c, norms=False)
    p.use_static_step()
    rng = np.random.default_rng(3)
    T = 13
    states = rng.standard_normal((T, c.state_dim))
    tokens = rng.standard_normal((4, c.prefix_dim)).astype(np.float32)
    p.refresh_prefix(tokens, 0)
    got = np.stack([p.step(states[t], t)[0] for t in range(T)])
    prefix = PrefixBatch(torch.as_tensor(tokens)[None, None], torch.zeros(1, 1, dtype=torch.int64),
                         torch.zeros(1, T, dtype=torch.int64))
    with torch.no_grad():
        out, _ = p.model(torch.as_tensor(states, dtype=torch.float32)[None],
                         torch.arange(T)[None], prefix=prefix)
    np.testing.assert_allclose(got, out[0].double().numpy(), atol=1e-5)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # the overflow is the point
def test_a_non_finite_tick_is_undone_like_the_cache_path():
    """A state that overflows the network: both paths raise, store nothing, and continue equal."""
    eager, static = _pair(_config(predict_steps=3), ensemble=3)
    rng = np.random.default_rng(5)
    for t in range(4):
        s = rng.standard_normal(3)
        np.testing.assert_array_equal(static.step(s, t, 3), eager.step(s, t, 3))
    raised = []
    for p in (eager, static):
        with pytest.raises((ValueError, CacheError), match="not finite|NaN/inf") as err:
            p.step(np.full(3, 1e300), 4, 3)
        raised.append(err.type)
        assert p.cache_fill == 4
        assert torch.isfinite(p.cache.k).all() and torch.isfinite(p.cache.v).all()
    assert raised[0] is raised[1]  # binned head: decoded bins stay finite, the keys do not
    for t in range(4, 12):
        s = rng.standard_normal(3)
        np.testing.assert_array_equal(static.step(s, t, 3), eager.step(s, t, 3))
    with pytest.raises(CacheError, match="does not follow"):
        static.step(np.zeros(3), 11)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_each_row_traces_as_one_graph_without_host_syncs():
    """What CUDA-graph capture needs, checked on the CPU: torch.compile(fullgraph=True) traces
    the committed row and the speculative row each as ONE graph (no ``.item()``, no branch on
    a tensor value, no shape that depends on data: any of them is a graph break, an error
    here), and the traced rows give the same actions."""
    c = _config(predict_steps=4, use_prev_action=True, delta_actions=True, window=4)
    eager, traced = _pair(c, ensemble=3)
    st = traced._static
    st._commit_row = torch.compile(st._commit_row, backend="eager", fullgraph=True)
    st._lookahead_row = torch.compile(st._lookahead_row, backend="eager", fullgraph=True)
    try:
        a, b = _episode(eager, ticks=24), _episode(traced, ticks=24)
    finally:
        torch._dynamo.reset()
    np.testing.assert_array_equal(b, a)


def test_bf16_static_step_stays_within_the_stated_tolerance():
    c = _config(head="regression", predict_steps=2, delta_actions=True, n_embd=64, ffn=128)
    eager, _ = _pair(c, ensemble=2, norms=False)
    low = _policy(c, norms=False)
    low.use_static_step(bf16=True)
    low.ensemble_steps = 2
    assert low.cache.k.dtype == torch.bfloat16
    a, b = _episode(eager), _episode(low)
    assert np.abs(b - a).max() < BF16_ATOL, np.abs(b - a).max()


def test_cuda_graph_on_the_cpu_names_the_device_parameter():
    p = _policy(_config())
    with pytest.raises(ValueError, match="parameter device: 'cuda'"):
        p.use_cuda_graph()
    with pytest.raises(ValueError, match="CUDA device"):
        p.use_static_step(cuda_graph=True)


def test_the_node_accepts_cuda_graph_and_refuses_it_on_the_cpu(tmp_path):
    from arvla_base.config import ConfigError
    from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint
    from arvla_action_expert.node_config import INFERENCE_MODES, ExpertNodeConfig

    assert {"cuda_graph", "cuda_graph_bf16"} <= set(INFERENCE_MODES)
    pytest.importorskip("rclpy")
    from arvla_action_expert.node import ActionExpertNode

    p = _policy(_config())
    ck = save_checkpoint(tmp_path / "expert", p.model, state_norm=p.state_norm,
                         target_norm=p.target_norm, meta=CheckpointMeta())
    cfg = ExpertNodeConfig(checkpoint=str(ck), inference="cuda_graph", device="cpu",
                           joints=["a", "b", "c"])
    with pytest.raises(ConfigError, match="inference: 'cuda_graph'.*device"):
        ActionExpertNode._load_policy(cfg)


# --------------------------------------------------------------------------------------------
# On a CUDA device: the captured graphs (skipped without one)


@needs_cuda
@pytest.mark.parametrize("head", ["binned", "regression"])
def test_cuda_graph_equals_the_cache_path_on_the_same_gpu(head):
    """fp32, graph replay against the eager cache path on the same device. Same kernels on the
    same shapes: expected bit for bit; the bound allows for a different cuBLAS algorithm under
    capture (a GPU session records the observed maximum in the note)."""
    c = _config(head=head, predict_steps=4, use_prev_action=True, delta_actions=True)
    eager, graph = _policy(c, device="cuda"), _policy(c, device="cuda")
    graph.use_cuda_graph()
    assert graph._static is not None and graph._static.graphs is not None
    eager.ensemble_steps = graph.ensemble_steps = 3
    a, b = _episode(eager), _episode(graph)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


@needs_cuda
def test_cuda_graph_equals_the_cpu_cache_path():
    c = _config(head="regression", predict_steps=4, delta_actions=True)
    cpu, graph = _policy(c), _policy(c, device="cuda")
    graph.use_cuda_graph()
    cpu.ensemble_steps = graph.ensemble_steps = 4
    np.testing.assert_allclose(_episode(graph), _episode(cpu), rtol=0, atol=1e-4)


@needs_cuda
def test_cuda_graph_bf16_within_the_stated_tolerance():
    c = _config(head="regression", predict_steps=2, delta_actions=True, n_embd=64, ffn=128)
    cpu, graph = _policy(c, norms=False), _policy(c, device="cuda", norms=False)
    graph.use_cuda_graph(bf16=True)
    cpu.ensemble_steps = graph.ensemble_steps = 2
    diff = np.abs(_episode(graph) - _episode(cpu)).max()
    assert diff < BF16_ATOL, diff


@needs_cuda
def test_checkpoint_saved_from_the_gpu_runs_on_the_cpu_and_as_a_graph(tmp_path):
    """A checkpoint is device-independent: saved from one device, the policy loads on both."""
    from arvla_action_expert.checkpoint import CheckpointMeta, save_checkpoint

    c = _config(head="regression")
    p = _policy(c, device="cuda")
    ck = save_checkpoint(tmp_path / "expert", p.model, state_norm=p.state_norm,
                         target_norm=p.target_norm, meta=CheckpointMeta(control_rate_hz=20.0))
    on_cpu = ExpertPolicy.from_checkpoint(ck)
    on_gpu = ExpertPolicy.from_checkpoint(ck, device="cuda")
    on_gpu.use_cuda_graph()
    np.testing.assert_allclose(_episode(on_gpu), _episode(on_cpu), rtol=0, atol=1e-4)
