"""ONNX graphs built by hand from a loaded model's weights, and the session that runs them.

The building blocks cover what BLIP's and RoBERTa's layers need. A linear layer runs in one
of three kernels (`core.accel.int8` holds the int8 layers and puts each in its own):
- float32: `MatMul`.
- int8 blocks: `MatMulNBits` with int8 weights in blocks of 64 along the input, each with its
  own scale, and activations rounded to int8 per row and block as they enter
  (`accuracy_level=4`). It reads its weights at memory speed: for one row at a time, as a
  caption's decoding step has.
- int8 rows: `MatMulIntegerToFloat` with 7-bit weights, one scale per output, and each row
  of activations rounded to int8 with its own scale in the graph: u8 × s8 integer products,
  about twice float32's pace on AVX2, for many rows at once (an image, packed texts).
All three compute each row on its own, so a request's numbers do not depend on what it is
batched with (docs/performance.md has the kernels' speed per CPU class).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

# Weights are quantized in blocks of this many inputs, each block with its own scale: blocks
# of 32 kept a little closer to fp32 but took more memory and were slower (docs/quantization.md).
BLOCK_SIZE = 64
# onnxruntime 1.23 reads ONNX IR versions up to 11; onnx writes its newest by default.
_IR_VERSION = 10
_OPSETS = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
# transformers' activation names → ONNX `Gelu`'s `approximate`.
GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
_MICROSOFT_OPS = {
    "MatMulNBits",
    "MatMulIntegerToFloat",
    "MultiHeadAttention",
    "SkipLayerNormalization",
}
# Activations round to ±127 per row. Weights in the rows kernel keep ±63: without VNNI, x86
# int8 kernels add pairs of u8 × s8 products in 16 bits, which 8-bit weights can overflow.
ACTIVATION_LEVELS, ROW_WEIGHT_LEVELS = 127, 63


def session(graph: onnx.ModelProto, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Plain malloc, not ONNX Runtime's arena: what a batch needed goes back to the system with
    # the rest when the inference thread goes idle (`core.memory`), 32 MiB after 8 photos.
    options.enable_cpu_mem_arena = False
    # Threads spin between the graph's nodes rather than sleep: 10–12 instead of 13–14 ms a
    # step. But they stop as soon as a step returns: left to spin on (about 20 ms), they took
    # the two cores from torch, and a reply's three texts classified right after a caption took
    # 36–40 instead of 18 ms. Captions are as fast either way.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    # Weights handed over in a file beside the graph are mapped, repacked for the int8 kernel
    # and let go; handed over in memory, ONNX Runtime keeps them as well: 304 against 170 MiB.
    with tempfile.TemporaryDirectory(prefix="mood-bot-graph-") as folder:
        path = Path(folder) / "step.onnx"
        onnx.save_model(graph, path, save_as_external_data=True, location="step.weights")
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Graph:
    """The handful of ONNX building blocks that BLIP's and RoBERTa's layers need."""

    def __init__(self, heads: int, hidden_size: int) -> None:
        self.heads_count = heads
        self.head_size = hidden_size // heads
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names = 0
        self.scale = self.head_size**-0.5
        self.hidden_size = hidden_size

    @functools.cached_property
    def _split_heads(self) -> str:
        return self.constant(np.array([0, self.heads_count, 1, self.head_size], "i8"))

    @functools.cached_property
    def _split_heads_t(self) -> str:
        return self.constant(np.array([0, self.heads_count, self.head_size, 1], "i8"))

    @functools.cached_property
    def _merge_heads(self) -> str:
        return self.constant(np.array([0, self.hidden_size], "i8"))

    def name(self, kind: str) -> str:
        self._names += 1
        return f"{kind}.{self._names}"

    def constant(self, array: np.ndarray) -> str:
        name = self.name("constant")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(
        self, op: str, *inputs: str, outputs: int = 1, **attributes: object
    ) -> str | list[str]:
        names = [self.name(op) for _ in range(outputs)]
        domain = "com.microsoft" if op in _MICROSOFT_OPS else None
        self.nodes.append(helper.make_node(op, list(inputs), names, domain=domain, **attributes))
        return names[0] if outputs == 1 else names

    def input(self, name: str, dtype: int, shape: list[str | int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def output(
        self, value: str, name: str, dtype: int, shape: list[str | int] | None = None
    ) -> str:
        """Make `value` a graph output called `name`, by renaming it where it is made (an
        `Identity` node would copy it at every step); call it before any node reads `value`."""
        producer = next(node for node in reversed(self.nodes) if value in node.output)
        producer.output[list(producer.output).index(value)] = name
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape or ["batch"]))
        return name

    def linear(self, x: str, weight: torch.Tensor, bias: torch.Tensor | None) -> str:
        """float32: `x @ weight.T + bias`."""
        weight = weight.detach().float().T.contiguous().numpy()
        return self._add_bias(self.node("MatMul", x, self.constant(weight)), bias)

    def _add_bias(self, product: str, bias: torch.Tensor | None) -> str:
        if bias is None:
            return product
        return self.node("Add", product, self.constant(bias.detach().float().numpy()))

    def rows_product(
        self, x: str, levels: np.ndarray, scales: np.ndarray, bias: torch.Tensor | None
    ) -> str:
        """int8 rows: each row of `x` rounded to int8 with its own scale (largest / 127),
        multiplied in integers by `levels` (`quantize_rows`' layout), then rescaled."""
        largest = self.node("ReduceMax", self.node("Abs", x), self._last_axis, keepdims=1)
        scale = self.node("Max", self.node("Mul", largest, self._per_level), self._tiny)
        rounded = self.node("Round", self.node("Div", x, scale))
        # Stored +128 as uint8: the u8 × s8 product is the one every x86 CPU runs fast.
        as_uint8 = self.node("Cast", self.node("Add", rounded, self._offset), to=TensorProto.UINT8)
        product = self.node(
            "MatMulIntegerToFloat",
            as_uint8,
            self.constant(levels.T.copy()),
            self._one,
            self.constant(scales),
            self._offset_uint8,
        )
        return self._add_bias(self.node("Mul", product, scale), bias)

    @functools.cached_property
    def _last_axis(self) -> str:
        return self.constant(np.array([-1], "i8"))

    @functools.cached_property
    def _tiny(self) -> str:
        return self.constant(np.array(np.finfo(np.float32).tiny, "f4"))

    @functools.cached_property
    def _per_level(self) -> str:
        return self.constant(np.array(1 / ACTIVATION_LEVELS, "f4"))

    @functools.cached_property
    def _offset(self) -> str:
        return self.constant(np.array(128, "f4"))

    @functools.cached_property
    def _offset_uint8(self) -> str:
        return self.constant(np.array(128, "u1"))

    @functools.cached_property
    def _one(self) -> str:
        return self.constant(np.array(1, "f4"))

    def blocks_product(
        self,
        x: str,
        blocks: np.ndarray,
        scales: np.ndarray,
        bias: torch.Tensor | None,
        in_features: int,
    ) -> str:
        """int8 blocks: `MatMulNBits` over int8 `blocks` (`quantize_blocks`' layout) and
        their scales."""
        out_features, count, block_size = blocks.reshape(len(blocks), -1, BLOCK_SIZE).shape
        optional = [] if bias is None else ["", "", self.constant(bias.detach().float().numpy())]
        return self.node(
            "MatMulNBits",
            x,
            self.constant(blocks.reshape(out_features, count, block_size)),
            self.constant(scales.reshape(-1)),
            *optional,  # no zero points (128 is implied), no reordering, then the bias
            K=in_features,
            N=out_features,
            bits=8,
            block_size=BLOCK_SIZE,
            accuracy_level=4,  # int8 products: what makes it fast
        )

    def norm(self, x: str, layer_norm: nn.LayerNorm) -> str:
        return self.node(
            "LayerNormalization", x, *self._affine(layer_norm), axis=-1, epsilon=layer_norm.eps
        )

    def gelu(self, x: str, activation: str) -> str:
        return self.node("Gelu", x, approximate=GELU[activation])

    def split(self, x: str, parts: int) -> list[str]:
        return self.node("Split", x, axis=-1, num_outputs=parts, outputs=parts)

    def heads(self, x: str, *, transposed: bool = False) -> str:
        """(batch, hidden) → (batch, heads, 1, head size), or (…, head size, 1) transposed"""
        return self.node("Reshape", x, self._split_heads_t if transposed else self._split_heads)

    def attend(self, query: str, keys_t: str, values: str) -> str:
        """Attention of one (scaled) query per head, the heads merged back: (batch, hidden)."""
        scores = self.node("MatMul", query, keys_t)
        context = self.node("MatMul", self.node("Softmax", scores, axis=-1), values)
        return self.node("Reshape", context, self._merge_heads)

    def add_and_norm(self, projected: str, states: str, norm: nn.LayerNorm) -> str:
        """BERT's output of a block, once projected: add the residual, LayerNorm, one node."""
        return self.node(
            "SkipLayerNormalization", projected, states, *self._affine(norm), epsilon=norm.eps
        )

    def _affine(self, layer_norm: nn.LayerNorm) -> list[str]:
        return [
            self.constant(p.detach().float().numpy()) for p in (layer_norm.weight, layer_norm.bias)
        ]

    def cache(self, kind: str, index: int, new: str) -> str:
        """The layer's self-attention keys or values so far, this step's appended. Keys are
        kept transposed, (batch, heads, head size, tokens), ready to multiply."""
        axis = 3 if kind == "key" else 2
        shape: list[str | int] = ["batch", self.heads_count, self.head_size, self.head_size]
        shape[axis] = "past"
        past = self.input(f"past_{kind}.{index}", TensorProto.FLOAT, shape)
        present = self.node("Concat", past, new, axis=axis)
        shape[axis] = "total"
        return self.output(present, f"present_{kind}.{index}", TensorProto.FLOAT, shape)

    def image_shape(self, *, keys: bool) -> list[str | int]:
        """Image keys come transposed, ready to multiply: (batch, heads, head size, image)."""
        tail = [self.head_size, "image"] if keys else ["image", self.head_size]
        return ["batch", self.heads_count, *tail]

    def model(self, name: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=_OPSETS)
        model.ir_version = _IR_VERSION
        return model


def quantize_blocks(weight: torch.Tensor, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`MatMulNBits`' 8-bit layout: symmetric int8 per block, stored +128 as uint8.

    Returns (out_features, blocks, block_size) uint8 and one float32 scale per block; a last,
    partial block is padded with zeros.
    """
    out_features, in_features = weight.shape
    blocks = -(-in_features // block_size)
    padded = torch.zeros(out_features, blocks * block_size)
    padded[:, :in_features] = weight
    padded = padded.view(out_features, blocks, block_size)
    scales = padded.abs().amax(dim=-1).clamp(min=torch.finfo(torch.float32).tiny) / 127
    quantized = torch.round(padded / scales[..., None]).clamp(-127, 127) + 128
    return quantized.to(torch.uint8).numpy(), scales.reshape(-1).numpy()


def quantize_rows(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The int8 rows kernel's weights: levels within ±`ROW_WEIGHT_LEVELS`, one float32 scale
    per output (its largest absolute weight / `ROW_WEIGHT_LEVELS`); (out, in) and (out,)."""
    scales = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
    scales = scales / ROW_WEIGHT_LEVELS
    levels = torch.round(weight / scales[:, None]).clamp(-ROW_WEIGHT_LEVELS, ROW_WEIGHT_LEVELS)
    return levels.to(torch.int8).numpy(), scales.numpy()


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A float32 copy in C order, made in one pass whatever the tensor's strides."""
    copy = torch.empty(tensor.shape, dtype=torch.float32)
    copy.copy_(tensor.detach())
    return copy.numpy()
