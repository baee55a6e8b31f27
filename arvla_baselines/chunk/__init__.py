"""``arvla_baselines.chunk``: the ACT-style chunked baseline: the reactive policy the AR expert is compared against.

Same data, same perception, different action head. A chunked policy looks at the newest
vision-language prefix and the current joint state, predicts the next C actions at once and
forgets everything when it predicts again: it has no memory across chunks, like ACT, pi0 or any
chunk-based VLA. The AR expert (``arvla_action_expert``) instead emits one action per step and
keeps a rolling memory. Everything else is shared so the comparison isolates the head:

- training episodes come through ``arvla_action_expert.data`` (``SampleBuilder`` normalises
  them with the same statistics code), prefixes are the same backbone tokens, and a sample's
  prefix is as stale as the expert's stage-2 samples (capture step + a delay drawn by
  ``reanchor.sample_staleness``). The baseline is NOT told the delay: reactive heads have no
  re-anchoring, they act on "the newest frame" as if it were now;
- ``ChunkPolicy`` implements the ``ExpertPolicy`` interface (docs/CONTRACTS.md), so the
  unchanged ``ActionExpertNode`` runs it behind the same topics, limits and staleness rules.

Model (read top-down: config -> model -> policy): an encoder over [projected prefix tokens ;
current state token] (bidirectional), a decoder whose C learned query tokens cross-attend to it,
and a linear head -> C future absolute joint targets (normalised), L1 loss on the real steps.
ACT trains this as a CVAE with a style latent that is set to zero at test time; we train the
deterministic variant (no latent), which is what ACT runs at inference anyway and avoids a KL
weight to tune. Prefix tokens may be dropped in training (``prefix_dropout``) so the policy can
also act without any prefix (``allow_action_only``).

Two ways to execute chunks (``ChunkExecConfig.mode``):

- ``"chunk"``: predict at step k, execute rows 0 .. exec_horizon-1 open loop (the measured state
  is ignored in between), predict again at k + exec_horizon;
- ``"temporal_ensemble"``: predict a chunk EVERY step; the action for step k is the weighted mean
  of every stored chunk's row for k, with ACT's weights ``w_i = exp(-m * i)``, i = 0 for the
  OLDEST prediction (ACT's choice: m > 0 favours older predictions, a smoothing prior).

Checkpoints are a directory ``model.safetensors`` + ``config.json`` (format ``arvla-chunk/1``),
written and read by the expert's checkpoint code (``checkpoint.commit_checkpoint``: config.json is
the single commit point, an interrupted save is rolled forward on load); no pickle anywhere.
"""

from arvla_baselines.chunk.configuration import (FORMAT, MODES, POLICY_MODES, ChunkConfig,
                                                 ChunkDataConfig, ChunkExecConfig, ChunkTrainConfig)
from arvla_baselines.chunk.modeling import (ChunkMeta, ChunkTransformer, LoadedChunk, chunk_loss,
                                            load_chunk_checkpoint, save_chunk_checkpoint)
from arvla_action_expert.policy import MAX_LOOKAHEAD
from arvla_baselines.chunk.policy import ChunkPolicy, ensemble_weights
from arvla_baselines.chunk.training import (ChunkTrainResult, chunk_batch,
                                            evaluate_chunk, train_chunk, train_chunk_policy)

__all__ = ["ChunkConfig", "ChunkDataConfig", "ChunkExecConfig", "ChunkMeta", "ChunkPolicy",
           "ChunkTrainConfig", "ChunkTrainResult", "ChunkTransformer", "FORMAT", "LoadedChunk",
           "MAX_LOOKAHEAD", "MODES", "POLICY_MODES", "chunk_batch", "chunk_loss", "ensemble_weights",
           "evaluate_chunk", "load_chunk_checkpoint", "save_chunk_checkpoint", "train_chunk",
           "train_chunk_policy"]
