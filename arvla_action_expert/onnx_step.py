"""The cached step as one ONNX Runtime call (optionally int8 weights): the fast CPU path.

Why: at paper size one step is ~90 small torch ops (~1 ms of Python/ATen dispatch alone) plus
reading ~70 MB of fp32 weights. ONNX Runtime runs the whole step as one graph call and its int8
GEMV kernels read 4x fewer bytes; see bench/expert_step.py for the numbers.

What: the graph below is the same math as ``ARExpert.step`` (pre-LN blocks, RoPE at the step
index, attention over the HybridKVCache's prefix + ring slots, the head) written by hand with
``onnx.helper``, so nothing is traced and every node is visible here. The cache memory stays the
torch tensors of ``HybridKVCache``: the graph reads each layer's keys/values in place (numpy
views, no copy) and returns the new token's k/v, which ``step`` writes into the reserved slot.
The new token attends to itself through a separate score (its slot in the input is hidden),
because its k/v only exist inside the graph.

Equivalence with the torch path is a test (fp32: atol 1e-4; int8: bounded error).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from arvla_action_expert.cache import HybridKVCache
from arvla_action_expert.model import ARExpert, _inv_freq

__all__ = ["OnnxStep"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


class _GraphBuilder:
    """Tiny helper: named nodes and initializers, so the graph code reads like the model."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self.no_quant: list[str] = []  # activation x activation matmuls stay float
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], *, n_out: int = 1, domain: str = "",
           quantize: bool = True, **attrs: object) -> str | list[str]:
        self._n += 1
        name = f"{op}_{self._n}"
        outs = [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(self.helper.make_node(op, inputs, outs, name=name, domain=domain,
                                                **attrs))
        if not quantize:
            self.no_quant.append(name)
        return outs[0] if n_out == 1 else outs

    def rename(self, old: str, new: str) -> None:
        """Make ``new`` the name of value ``old`` (graph outputs without Identity nodes)."""
        for node in self.nodes:
            for seq in (node.input, node.output):
                for j, name in enumerate(seq):
                    if name == old:
                        seq[j] = new

    def linear(self, x: str, lin: torch.nn.Linear, name: str) -> str:
        y = self.op("MatMul", [x, self.const(f"{name}.wT", _np(lin.weight).T)])
        if lin.bias is None:
            return y
        return self.op("Add", [y, self.const(f"{name}.b", _np(lin.bias))])

    def layer_norm(self, x: str, ln: torch.nn.LayerNorm, name: str) -> str:
        return self.op("LayerNormalization", [x, self.const(f"{name}.g", _np(ln.weight)),
                                              self.const(f"{name}.b", _np(ln.bias))],
                       axis=-1, epsilon=float(ln.eps))


def build_step_graph(model: ARExpert, slots: int):
    """ONNX ModelProto of one cached step. Inputs: x (1, state_dim) [, prev (1, action_dim)],
    cos2/sin2 (1, head_dim) = [cos, cos] / [-sin, sin] at the step, bias (1, slots) additive mask
    of the cache slots (write slot hidden), k{l}/v{l} (heads, slots, head_dim).
    Outputs: head output (1, out) and k_new{l}/v_new{l} (heads, 1, head_dim).

    Node-count matters (each small node costs a few us), so: q and k are rotated together, the
    softmax scale is folded into the query weights, and scores are ``K @ q^T`` (no transpose of
    the cached keys)."""
    from onnx import TensorProto, helper

    c = model.config
    H, hd, C = c.n_head, c.head_dim, c.n_embd
    g = _GraphBuilder()
    vi = helper.make_tensor_value_info
    f32 = TensorProto.FLOAT
    inputs = [vi("x", f32, [1, c.state_dim])]
    if model.prev_in is not None:
        inputs.append(vi("prev", f32, [1, c.action_dim]))
    inputs += [vi("cos2", f32, [1, hd]), vi("sin2", f32, [1, hd]), vi("bias", f32, [1, slots])]
    outputs = [vi("out", f32, [1, model.head.out_features])]
    shape_heads = g.const("shape_3h1d", np.array([3 * H, 1, hd], np.int64))
    shape_col = g.const("shape_hd1", np.array([H, hd, 1], np.int64))
    shape_row = g.const("shape_h1s", np.array([H, 1, slots], np.int64))
    shape_c = g.const("shape_1c", np.array([1, C], np.int64))
    halves = g.const("halves", np.array([hd // 2, hd // 2], np.int64))
    qk_v = g.const("qk_v", np.array([2 * H, H], np.int64))
    q_k = g.const("q_k", np.array([H, H], np.int64))
    score_split = g.const("score_split", np.array([slots, 1], np.int64))
    axis_last = g.const("axis_last", np.array([-1], np.int64))
    scale = hd ** -0.5

    x = g.linear("x", model.state_in, "state_in")
    if model.prev_in is not None:
        x = g.op("Add", [x, g.linear("prev", model.prev_in, "prev_in")])
    for i, blk in enumerate(model.blocks):
        inputs += [vi(f"k{i}", f32, [H, slots, hd]), vi(f"v{i}", f32, [H, slots, hd])]
        # qkv projection with the 1/sqrt(d) scale folded into the query rows (RoPE is linear)
        w = _np(blk.attn.qkv.weight).copy()
        b = _np(blk.attn.qkv.bias).copy()
        w[:C] *= scale
        b[:C] *= scale
        h = g.layer_norm(x, blk.ln_1, f"b{i}.ln_1")
        qkv = g.op("Add", [g.op("MatMul", [h, g.const(f"b{i}.qkv.wT", w.T)]),
                           g.const(f"b{i}.qkv.b", b)])
        qk, v = g.op("Split", [g.op("Reshape", [qkv, shape_heads]), qk_v], n_out=2, axis=0)
        # RoPE on q and k at once: x * [cos, cos] + swap_halves(x) * [-sin, sin]
        lo, hi = g.op("Split", [qk, halves], n_out=2, axis=-1)
        qk = g.op("Add", [g.op("Mul", [qk, "cos2"]),
                          g.op("Mul", [g.op("Concat", [hi, lo], axis=-1), "sin2"])])
        q, k = g.op("Split", [qk, q_k], n_out=2, axis=0)  # (H, 1, hd) each
        s_cache = g.op("MatMul", [f"k{i}", g.op("Reshape", [q, shape_col])], quantize=False)
        s_cache = g.op("Add", [g.op("Reshape", [s_cache, shape_row]), "bias"])  # (H, 1, slots)
        s_self = g.op("ReduceSum", [g.op("Mul", [q, k]), axis_last], keepdims=1)  # (H, 1, 1)
        w_att = g.op("Softmax", [g.op("Concat", [s_cache, s_self], axis=-1)], axis=-1)
        w_cache, w_self = g.op("Split", [w_att, score_split], n_out=2, axis=-1)
        y = g.op("Add", [g.op("MatMul", [w_cache, f"v{i}"], quantize=False),
                         g.op("Mul", [w_self, v])])  # (H, 1, hd)
        x = g.op("Add", [x, g.linear(g.op("Reshape", [y, shape_c]), blk.attn.proj,
                                     f"b{i}.proj")])
        h = g.linear(g.layer_norm(x, blk.ln_2, f"b{i}.ln_2"), blk.mlp.fc, f"b{i}.fc")
        h = g.op("Gelu", [h], domain="com.microsoft")  # exact (erf) GELU, as F.gelu
        x = g.op("Add", [x, g.linear(h, blk.mlp.proj, f"b{i}.mlp_proj")])
        g.rename(k, f"k_new{i}")
        g.rename(v, f"v_new{i}")
        outputs += [vi(f"k_new{i}", f32, [H, 1, hd]), vi(f"v_new{i}", f32, [H, 1, hd])]
    g.rename(g.linear(g.layer_norm(x, model.ln_f, "ln_f"), model.head, "head"), "out")
    graph = helper.make_graph(g.nodes, "arvla_expert_step", inputs, outputs, g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    proto.ir_version = 8
    return proto, g.no_quant


class OnnxStep:
    """``ARExpert.step`` for batch 1 through ONNX Runtime, on a ``HybridKVCache``."""

    def __init__(self, model: ARExpert, cache: HybridKVCache, *, int8: bool = True,
                 threads: int = 1):
        import onnxruntime as ort
        from onnx import TensorProto

        if cache.k.dtype != torch.float32 or cache.k.device.type != "cpu":
            raise ValueError(f"OnnxStep needs a float32 CPU cache, got {cache.k.dtype} on "
                             f"{cache.k.device}")
        self.model, self.cache = model, cache
        c = model.config
        slots = cache.k.shape[3]
        proto, no_quant = build_step_graph(model, slots)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "step.onnx")
            import onnx

            onnx.save(proto, path)
            if int8:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                qpath = os.path.join(tmp, "step_int8.onnx")
                quantize_dynamic(path, qpath, weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=True,  # 7-bit weights: no u8s8 saturation on CPUs without VNNI
                                 nodes_to_exclude=no_quant,
                                 extra_options={"DefaultTensorType": TensorProto.FLOAT})
                path = qpath
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.int8 = int8
        self.n_layer = c.n_layer
        self.inv_freq = _inv_freq(c.head_dim, c.rope_base, "cpu", c.rope_dims).numpy()  # float64
        # numpy views of the cache memory: the graph reads them without a copy
        self.k_views = [cache.k[i, 0].numpy() for i in range(c.n_layer)]
        self.v_views = [cache.v[i, 0].numpy() for i in range(c.n_layer)]
        self.bias_view = cache.bias[0, 0].numpy()  # (1, slots)
        self.use_prev = model.prev_in is not None
        self.cos2 = np.empty((1, c.head_dim), np.float32)
        self.sin2 = np.empty((1, c.head_dim), np.float32)

    def __call__(self, x: np.ndarray, step_index: int, prev: np.ndarray | None = None
                 ) -> np.ndarray:
        """Normalised state (state_dim,) at ``step_index`` -> head output (out,) numpy.

        Between ``cache.begin_step`` and ``cache.end_step``, like ``ARExpert.step``.
        """
        cache = self.cache
        slot = cache.write_slot
        angles = step_index * self.inv_freq  # float64, see model.rope_cos_sin
        half = angles.shape[0]
        cos, sin = np.cos(angles), np.sin(angles)
        self.cos2[0, :half] = cos
        self.cos2[0, half:] = cos
        self.sin2[0, :half] = -sin
        self.sin2[0, half:] = sin
        bias = self.bias_view.copy()
        bias[0, slot] = -np.inf  # the new token is scored separately inside the graph
        feeds = {"x": x.reshape(1, -1).astype(np.float32, copy=False), "cos2": self.cos2,
                 "sin2": self.sin2, "bias": bias}
        if self.use_prev:
            feeds["prev"] = np.asarray(prev, np.float32).reshape(1, -1)
        for i in range(self.n_layer):
            feeds[f"k{i}"] = self.k_views[i]
            feeds[f"v{i}"] = self.v_views[i]
        res = self.session.run(None, feeds)
        for i in range(self.n_layer):
            self.k_views[i][:, slot] = res[1 + 2 * i][:, 0]
            self.v_views[i][:, slot] = res[2 + 2 * i][:, 0]
        return res[0][0]
