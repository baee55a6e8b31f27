"""``arvla eval --mode inprocess``: the fast, deterministic path (no ROS), its records and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from arvla.commands.eval import _seed_range, cli_main
from arvla_base.config import ConfigError
from arvla_baselines.chunk import (ChunkConfig, ChunkExecConfig, ChunkMeta, ChunkPolicy,
                                   save_chunk_checkpoint)
from arvla_eval.records import load_records


def test_seeds_are_a_count_or_a_range():
    assert _seed_range(None, 7, 3) == [7, 8, 9]
    assert _seed_range("2", 100, 10) == [100, 101]
    assert _seed_range("100000:100050", 0, 10) == list(range(100000, 100050))
    for bad in ("5:5", "x", "1:y", "0"):
        with pytest.raises(ConfigError, match="--seeds"):
            _seed_range(bad, 0, 10)


def _chunk_checkpoint(tmp_path):
    from arvla_sim.robot import JOINT_NAMES

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cfg = ChunkConfig(state_dim=8, action_dim=8, prefix_dim=1280, max_prefix_tokens=8, chunk=5,
                      n_embd=32, n_head=4, n_enc_layer=1, n_dec_layer=1, ffn=64, dropout=0.0)
    pol = ChunkPolicy.build_untrained(cfg, joint_names=JOINT_NAMES)
    pol.model.head.weight.data.mul_(0.05)  # small, input-dependent actions around the bias
    return save_chunk_checkpoint(tmp_path / "chunk", pol.model, state_norm=pol.state_norm,
                                 target_norm=pol.target_norm,
                                 meta=ChunkMeta(joint_names=list(JOINT_NAMES)),
                                 exec_config=ChunkExecConfig())


def test_inprocess_eval_is_deterministic_and_reports_its_mode(tmp_path, capsys):
    ckpt = _chunk_checkpoint(tmp_path)
    # the demo's AR-only node parameter goes to the AR expert only, as through the graph
    (tmp_path / "expert.yaml").write_text("ensemble_steps: 4\n")
    runs = []
    for k in range(2):
        out = tmp_path / f"eval{k}"
        rc = cli_main(["--chunk", str(ckpt), "--out", str(out), "--policies", "chunk,chunk_te",
                       "--mode", "inprocess", "--seeds", "1000:1002", "--max-seconds", "1.0",
                       "--no-progress", "--workers", str(k + 1),
                       "--expert-params", str(tmp_path / "expert.yaml")])
        assert rc == 0, capsys.readouterr().err
        runs.append(load_records(out / "records.npz"))
    a, b = runs
    assert [(r.policy, r.seed) for r in a] == [("chunk", 1000), ("chunk", 1001),
                                               ("chunk_te", 1000), ("chunk_te", 1001)]
    for ra, rb in zip(a, b):  # same checkpoint, same seed: the same episode, bit for bit,
        #                       also when the episodes are spread over two processes
        assert np.array_equal(ra.joint_positions, rb.joint_positions)
        assert np.array_equal(ra.commands, rb.commands)
    for r in a:
        assert r.n_ticks == 20 and np.isfinite(r.positions).all()
        assert r.joint_times is not None and len(r.joint_times) == 5 * r.n_ticks + 1  # 100 Hz
        assert (r.staleness_steps[r.staleness_steps >= 0] >= 2).all()  # the emulated lag
        assert np.all(np.diff(r.command_times) > 0)
    # the two seeds differ (start posture noise), the two modes differ (chunk vs ensembled)
    assert not np.array_equal(a[0].joint_positions, a[1].joint_positions)
    assert not np.array_equal(a[0].commands, a[2].commands)
    printed = capsys.readouterr().out
    assert "in process, deterministic" in printed and "1000..1001 (2)" in printed
    report = (tmp_path / "eval0" / "report" / "report.md").read_text()
    assert "(inprocess)" in report and "Mode: in process, deterministic" in report
    assert " ± " in report  # jerk with its interval
    # each policy's records saved as soon as it finished
    assert [r.policy for r in load_records(tmp_path / "eval0" / "records_chunk_te.npz")] == ["chunk_te"] * 2


def test_inprocess_eval_refuses_a_bad_timing(tmp_path, capsys):
    ckpt = _chunk_checkpoint(tmp_path)
    (tmp_path / "expert.yaml").write_text("trajectory_timing: sometimes\n")
    rc = cli_main(["--chunk", str(ckpt), "--out", str(tmp_path / "o"), "--policies", "chunk",
                   "--mode", "inprocess", "--seeds", "1", "--expert-params",
                   str(tmp_path / "expert.yaml"), "--no-progress"])
    assert rc == 2 and "trajectory_timing" in capsys.readouterr().err


def test_ar_expert_episodes_are_the_same_spread_over_workers():
    """Each worker gets its own copy of the policy (its KV cache included): the AR expert's
    episodes over 2 workers equal those of one process, bit for bit."""
    from arvla_action_expert.model import ExpertConfig
    from arvla_action_expert.policy import ExpertPolicy
    from arvla_eval.inprocess import InProcessSetup, run_inprocess
    from arvla_sim.robot import JOINT_NAMES

    cfg = ExpertConfig(state_dim=8, action_dim=8, prefix_dim=1280, max_prefix_tokens=8, n_embd=32,
                       n_layer=1, n_head=4, ffn=64, window=8, head="regression", delta_actions=True,
                       predict_steps=4)
    policy = ExpertPolicy.build_untrained(cfg, seed=2, joint_names=list(JOINT_NAMES))
    setup = InProcessSetup(tasks=["pick_lift"], seeds=[1000, 1001, 1002],
                           max_seconds_per_task={"pick_lift": 0.6},
                           expert_params={"ensemble_steps": 2, "lookahead_steps": 3}, progress=False)
    one = run_inprocess({"ar": policy}, setup)
    two = run_inprocess({"ar": policy}, setup, workers=2)
    assert [r.seed for r in two] == [1000, 1001, 1002]
    for a, b in zip(one, two):
        assert a.n_ticks == 12 and np.array_equal(a.joint_positions, b.joint_positions)
        assert np.array_equal(a.commands, b.commands)


def test_ensemble_steps_reach_only_a_policy_that_ensembles(tmp_path):
    """As the node: a chunked baseline refuses ensemble_steps > 1 (arvla eval hands each policy
    its own parameters through node_params_for, so the demo's 4 reaches the AR expert only)."""
    from arvla_eval.evaluate import node_params_for
    from arvla_eval.inprocess import _configure

    chunk = ChunkPolicy.from_checkpoint(_chunk_checkpoint(tmp_path))
    with pytest.raises(ConfigError, match="ensemble_steps: 4"):
        _configure(chunk, {"ensemble_steps": 4})
    _configure(chunk, node_params_for(chunk, {"ensemble_steps": 4}))  # 1: accepted
    with pytest.raises(ConfigError, match="ensemble_m: 0.2"):
        _configure(chunk, {"ensemble_m": 0.2})
    _configure(chunk, node_params_for(chunk, {"ensemble_steps": 4, "ensemble_m": 0.2}))
