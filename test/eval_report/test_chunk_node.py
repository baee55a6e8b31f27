"""The unchanged ActionExpertNode runs a ChunkPolicy: real topics, sim clock, fake JTC checks.

Uses the expert node's in-process harness (test/expert_node/expert_harness.py): /clock one
period at a time, /joint_states and VLPrefix in, JointTrajectory and ExpertStatus out.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "expert_node"))

from arvla_msgs.msg import ExpertStatus  # noqa: E402
from expert_harness import JOINTS, MODEL_ID, PREFIX_DIM, Harness  # noqa: E402

from arvla_baselines.chunk import ChunkConfig, ChunkExecConfig, ChunkPolicy  # noqa: E402

CHUNK = 4


def _policy(mode: str) -> ChunkPolicy:
    cfg = ChunkConfig(state_dim=3, action_dim=3, prefix_dim=PREFIX_DIM, max_prefix_tokens=4,
                      chunk=CHUNK, n_embd=16, n_head=2, n_enc_layer=1, n_dec_layer=1, ffn=32,
                      dropout=0.0)
    return ChunkPolicy.build_untrained(cfg, model_id=MODEL_ID, joint_names=JOINTS,
                                       exec_config=ChunkExecConfig(mode))


@pytest.mark.parametrize("mode", ["chunk", "temporal_ensemble"])
def test_chunk_policy_drives_the_expert_node(ros_context, executor, mode):
    policy = _policy(mode)
    calls = []
    predict = policy.predict_chunk
    policy.predict_chunk = lambda state: (calls.append(state.copy()), predict(state))[1]
    h = Harness(ros_context, executor, policy=policy, lookahead_steps=3, max_staleness=20)
    h.joint_state({"j1": 0.1, "j2": -0.2, "j3": 0.05})
    h.prefix(h.step_time(0), tokens=2)
    ticks = []
    for k in range(10):
        if k:
            h.joint_state({"j1": 0.1 + 0.01 * k, "j2": -0.2, "j3": 0.05})
        ticks.append(h.tick())
    assert not h.jtc.violations, h.jtc.violations
    for k, t in enumerate(ticks):
        assert t.status.state == ExpertStatus.STATE_RUNNING, (k, t.status.reason)
        assert t.trajectory is not None and len(t.trajectory.points) == 4  # the point in execution + 3 rows
        assert t.status.cache_capacity == CHUNK
        assert t.status.staleness_steps == k and t.status.step == k
    fills = [t.status.cache_fill for t in ticks]
    if mode == "chunk":
        # one prediction per chunk, executed open loop: position in the chunk cycles 1..C
        assert fills == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
        assert len(calls) == 3
        np.testing.assert_allclose(calls[1][0], 0.14, atol=1e-9)  # state at replanning step 4
    else:
        # a prediction every tick; up to C chunks overlap
        assert fills == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
        assert len(calls) == 10
