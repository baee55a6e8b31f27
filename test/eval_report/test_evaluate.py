"""``arvla eval``: the closed loop through the real ROS graph (sim + perception + expert node),
the train-baseline / report subcommands, and the setup helpers."""

from __future__ import annotations

import numpy as np
import pytest

from arvla_base.config import ConfigError, load_config
from arvla_action_expert.data import InMemoryEpisodes, synthetic_episodes
from arvla_baselines.chunk import (ChunkConfig, ChunkExecConfig, ChunkMeta, ChunkPolicy,
                                     ChunkTrainConfig, save_chunk_checkpoint)
from arvla.commands.eval import cli_main
from arvla_eval.evaluate import fit_chunk_dims, load_node_params
from arvla_eval.records import load_records


def test_fit_dims_and_node_params(tmp_path, repo_root):
    cfg = load_config(ChunkTrainConfig, repo_root / "config" / "chunk_tiny.yaml")
    src = InMemoryEpisodes(synthetic_episodes(2, steps=16, state_dim=5, prefix_dim=12,
                                              n_tokens=10))
    fitted = fit_chunk_dims(cfg, src)
    assert (fitted.model.state_dim, fitted.model.action_dim, fitted.model.prefix_dim,
            fitted.model.max_prefix_tokens) == (5, 5, 12, 10)
    ros = tmp_path / "p.yaml"
    ros.write_text("arvla_perception:\n  ros__parameters:\n    max_rate_hz: 5.0\n")
    assert load_node_params(ros) == {"max_rate_hz": 5.0}
    plain = tmp_path / "q.yaml"
    plain.write_text("lookahead_steps: 2\nmax_staleness: 8\n")
    assert load_node_params(plain) == {"lookahead_steps": 2, "max_staleness": 8}
    with pytest.raises(ConfigError, match="not found"):
        load_node_params(tmp_path / "missing.yaml")


def test_train_baseline_and_errors(tmp_path, repo_root, capsys):
    rc = cli_main(["train-baseline", "--config", str(repo_root / "config" / "chunk_tiny.yaml"),
                   "--out", str(tmp_path / "c"), "--max-steps", "5", "--no-progress"])
    assert rc == 0 and (tmp_path / "c" / "model.safetensors").is_file()
    assert "L1" in (out := capsys.readouterr().out) and "on a fresh training batch" in out
    # no baseline and nothing to train it on: a clear error, exit 2
    rc = cli_main(["--chunk", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                   "--policies", "chunk"])
    assert rc == 2 and "no --episodes" in capsys.readouterr().err
    rc = cli_main(["--chunk", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
                   "--policies", "ar"])
    assert rc == 2 and "needs --expert" in capsys.readouterr().err


@pytest.mark.slow
def test_closed_loop_eval_through_the_ros_graph(tmp_path, capsys):
    """A random-weight chunk policy shaped for the sim (8 joints) and the default perception
    (5 x 1280 tokens): plumbing, not skill. Both execution modes, one short episode each."""
    from arvla_sim.robot import JOINT_NAMES

    cfg = ChunkConfig(state_dim=8, action_dim=8, prefix_dim=1280, max_prefix_tokens=8, chunk=5,
                      n_embd=32, n_head=4, n_enc_layer=1, n_dec_layer=1, ffn=64, dropout=0.0)
    pol = ChunkPolicy.build_untrained(cfg, joint_names=JOINT_NAMES)
    pol.model.head.weight.data.zero_()  # actions = bias = 0 -> stay near the zero pose
    ckpt = save_chunk_checkpoint(tmp_path / "chunk", pol.model, state_norm=pol.state_norm,
                                 target_norm=pol.target_norm,
                                 meta=ChunkMeta(joint_names=list(JOINT_NAMES)),
                                 exec_config=ChunkExecConfig())
    out = tmp_path / "eval"
    # the demo's AR-only node parameter must not reach (and stop) the baselines' nodes
    (tmp_path / "expert.yaml").write_text("ensemble_steps: 4\n")
    rc = cli_main(["--chunk", str(ckpt), "--out", str(out), "--policies", "chunk,chunk_te",
                   "--seeds", "1", "--max-seconds", "1.5", "--frames", "--no-progress",
                   "--expert-params", str(tmp_path / "expert.yaml")])
    assert rc == 0, capsys.readouterr().err
    records = load_records(out / "records.npz")
    assert [r.policy for r in records] == ["chunk", "chunk_te"]
    assert records[0].seed == records[1].seed == 1000
    for r in records:
        assert r.n_ticks >= 10 and r.joint_names == list(JOINT_NAMES)
        assert np.isfinite(r.positions).all()
        assert (r.staleness_steps >= 0).any(), "no prefix reached the expert"
    text = (out / "report" / "report.md").read_text()
    assert "| chunk | pick_lift |" in text and "| chunk_te | pick_lift |" in text
    assert "| chunk_te | pick_lift |" in capsys.readouterr().out
    # the report subcommand rebuilds it from the saved records
    assert cli_main(["report", str(out / "records.npz"), "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "report.html").is_file()
