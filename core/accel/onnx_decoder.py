"""Stage 2, inside: BLIP's text decoder as one ONNX Runtime graph with int8 weights.

While a caption is decoded, every step reads all of the decoder's weights once, so a step
costs what reading them costs. torch 2.13's int8 matrix-vector kernel reads them at about
10 GB/s on the benchmark's 2-core server; ONNX Runtime's `MatMulNBits` (int8 weights in blocks
of 64 along the input, each with its own scale; activations rounded to int8 per block of 64
as they enter, `accuracy_level=4`) reads them at memory speed: one step of the decoder takes
10–12 instead of 20 ms (README, "Precision"). On the benchmark's all-MiniLM-L6-v2 proxy this
kernel keeps as close to fp32 as torch's weight-only int8 does.

So in int8 mode, one greedy step of the decoder (its 12 layers, the language-model head and
the argmax) is one ONNX graph, built here from the model's float weights when it is loaded.
Two parts stay in torch, in the precision of the rest of the model: the token and position
embeddings (a lookup) and the image's cross-attention keys and values, computed once per photo
with 577 rows, where torch's kernels are the faster. The greedy loop around the steps is
`core.accel.caption_decoding`'s, shared with the torch decoder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from transformers.models.blip.modeling_blip_text import (
    BlipTextLMHeadModel,
    BlipTextSelfAttention,
)

from core.accel.caption_decoding import Step
from core.accel.linear_layers import stack_linear_layers
from core.accel.memory import Scratch

# Weights are quantized in blocks of this many inputs, each block with its own scale. Blocks of
# 32 kept a little closer to fp32 on the benchmark's proxy (cosine 0.9996 against 0.9994, the
# figure of torch's weight-only int8) but took 23 MiB more and were 2–5% slower.
BLOCK_SIZE = 64
# onnxruntime 1.23 reads ONNX IR versions up to 11; onnx writes its newest by default.
_IR_VERSION = 10
_OPSETS = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
# transformers' activation names → ONNX `Gelu`'s `approximate`.
_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
_MICROSOFT_OPS = {"MatMulNBits", "SkipLayerNormalization"}


def supports(decoder: nn.Module) -> bool:
    """Whether `decoder` is a BLIP text decoder this graph reproduces."""
    return isinstance(decoder, BlipTextLMHeadModel) and decoder.config.hidden_act in _GELU


class OnnxTextDecoder(nn.Module):
    """Stands in for `BlipForConditionalGeneration.text_decoder` in greedy decoding.

    It keeps the torch parts (embeddings, the image's key and value layers) as submodules, so
    `core.precision` converts them with the rest of the model; every other decoder weight lives
    in the ONNX Runtime session only.
    """

    def __init__(self, decoder: BlipTextLMHeadModel, threads: int) -> None:
        super().__init__()
        self.config = decoder.config
        self.generation_config = decoder.generation_config
        self.embeddings = decoder.bert.embeddings
        crosses = [layer.crossattention.self for layer in decoder.bert.encoder.layer]
        self.image_keys_values = ImageKeysValues(crosses, decoder.config.num_attention_heads)
        self._session = session(build_step(decoder), threads)

    def greedy_steps(self, image_embeds: torch.Tensor, max_new_tokens: int) -> Step:
        """`caption_decoding.Steps`: the caches grow inside the graph, so no length is set."""
        keys_t, values = self.image_keys_values(image_embeds)
        keys_t, values = keys_t.numpy(), values.numpy()
        _, batch, heads, head_size, _ = keys_t.shape
        empty_keys = np.zeros((batch, heads, head_size, 0), "f4")
        empty_values = np.zeros((batch, heads, 0, head_size), "f4")
        feeds: dict[str, np.ndarray] = {}
        for index, (layer_keys_t, layer_values) in enumerate(zip(keys_t, values, strict=True)):
            feeds[f"image_keys_t.{index}"] = layer_keys_t
            feeds[f"image_values.{index}"] = layer_values
            feeds[f"past_key.{index}"], feeds[f"past_value.{index}"] = empty_keys, empty_values
        names = [output.name for output in self._session.get_outputs()]
        embeddings = self.embeddings

        def step(tokens: torch.Tensor, position: int) -> torch.Tensor:
            states = embeddings.LayerNorm(
                embeddings.word_embeddings(tokens[:, 0])
                + embeddings.position_embeddings.weight[position]
            )
            feeds["states"] = _as_numpy(states)
            outputs = dict(zip(names, self._session.run(None, feeds), strict=True))
            for name, array in outputs.items():
                if name.startswith("present_"):
                    feeds[name.replace("present_", "past_")] = array
            return torch.from_numpy(outputs["next_tokens"]).to(tokens.device)[:, None]

        return step


class ImageKeysValues(nn.Module):
    """Every decoder layer's cross-attention keys and values for a batch of photos, in float32
    and in the layouts the graph reads: (layer, batch, head, head size, image) for the keys,
    (layer, batch, head, image, head size) for the values.

    All layers' keys come out of one product, computed as `W @ x.T` so that they come out
    transposed, and all values out of another: 11 against 23 ms for a photo, side by side.
    Both products and both float32 copies are written into buffers kept between calls
    (`core.accel.memory.Scratch`), not allocated afresh: captions of eight photos took 1.61 against
    2.08 s, of four 0.93 against 1.03 s, side by side. So what it returns holds until its next
    call.

    Not `nn.Linear`s, so `core.precision` casts the weights but neither packs nor quantizes them.
    """

    def __init__(self, crosses: Sequence[BlipTextSelfAttention], heads: int) -> None:
        super().__init__()
        keys = stack_linear_layers([cross.key for cross in crosses])
        values = stack_linear_layers([cross.value for cross in crosses])
        self.layers, self.heads = len(crosses), heads
        self.head_size = keys.out_features // (self.layers * heads)
        self.keys_weight = nn.Parameter(keys.weight.detach(), requires_grad=False)
        self.keys_bias = nn.Parameter(keys.bias.detach()[:, None], requires_grad=False)
        self.values_weight = nn.Parameter(values.weight.detach(), requires_grad=False)
        self.values_bias = nn.Parameter(values.bias.detach(), requires_grad=False)
        self._scratch = Scratch()

    def forward(self, image_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, image, _ = image_embeds.shape
        rows = image_embeds.reshape(batch * image, -1)
        layers, heads, head_size = self.layers, self.heads, self.head_size
        out_features = layers * heads * head_size
        # One buffer for both products, one after the other: (out, batch × image) for the keys,
        # then (batch × image, out) for the values.
        product = self._scratch.tensor("product", (out_features, batch * image), rows.dtype)
        torch.addmm(self.keys_bias, self.keys_weight, rows.mT, out=product)
        keys_t = self._scratch.tensor(
            "keys_t", (layers, batch, heads, head_size, image), torch.float32
        )
        keys_t.copy_(product.view(layers, heads, head_size, batch, image).permute(0, 3, 1, 2, 4))
        product = product.view(batch * image, out_features)
        torch.addmm(self.values_bias, rows, self.values_weight.mT, out=product)
        values = self._scratch.tensor(
            "values", (layers, batch, heads, image, head_size), torch.float32
        )
        values.copy_(product.view(batch, image, layers, heads, head_size).permute(2, 0, 3, 1, 4))
        return keys_t, values


def session(graph: onnx.ModelProto, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Plain malloc, not ONNX Runtime's arena: what a batch needed goes back to the system with
    # the rest when the inference thread goes idle (`core.accel.memory`), 32 MiB after 8 photos.
    options.enable_cpu_mem_arena = False
    # Threads spin between the graph's nodes rather than sleep: 10–12 instead of 13–14 ms a
    # step. But they stop as soon as a step returns: left to spin on (about 20 ms), they took
    # the two cores from torch, and a reply's three texts classified right after a caption took
    # 36–40 instead of 18 ms. Captions are as fast either way.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    # Weights handed over in a file beside the graph are mapped, repacked for the int8 kernel
    # and let go; handed over in memory, ONNX Runtime keeps them as well: 304 against 170 MiB.
    with tempfile.TemporaryDirectory(prefix="blip-decoder-") as folder:
        path = Path(folder) / "step.onnx"
        onnx.save_model(graph, path, save_as_external_data=True, location="step.weights")
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build_step(decoder: BlipTextLMHeadModel, block_size: int = BLOCK_SIZE) -> onnx.ModelProto:
    """One greedy step: embedded newest tokens and both attention caches in; argmax out."""
    config = decoder.config
    graph = _Graph(block_size, config.num_attention_heads, config.hidden_size)
    states = graph.input("states", TensorProto.FLOAT, ["batch", config.hidden_size])
    for index, layer in enumerate(decoder.bert.encoder.layer):
        attention = layer.attention.self
        # Queries come scaled by head size ** -0.5, as attention scores need them.
        scale = torch.tensor([graph.scale, 1.0, 1.0]).repeat_interleave(config.hidden_size)
        fused = [attention.query, attention.key, attention.value]
        query, key, value = graph.split(
            graph.linear(
                states,
                torch.cat([linear.weight for linear in fused]) * scale[:, None],
                torch.cat([linear.bias for linear in fused]) * scale,
            ),
            3,
        )
        keys_t = graph.cache("key", index, graph.heads(key, transposed=True))
        values = graph.cache("value", index, graph.heads(value))
        context = graph.attend(graph.heads(query), keys_t, values)
        states = graph.add_and_norm(context, states, layer.attention.output)
        image_keys = graph.input(
            f"image_keys_t.{index}", TensorProto.FLOAT, graph.image_shape(keys=True)
        )
        image_values = graph.input(
            f"image_values.{index}", TensorProto.FLOAT, graph.image_shape(keys=False)
        )
        cross = layer.crossattention.self.query
        query = graph.heads(
            graph.linear(states, cross.weight * graph.scale, cross.bias * graph.scale)
        )
        context = graph.attend(query, image_keys, image_values)
        states = graph.add_and_norm(context, states, layer.crossattention.output)
        hidden = graph.gelu(graph.module(states, layer.intermediate.dense), config.hidden_act)
        states = graph.add_and_norm(hidden, states, layer.output)
    head = decoder.cls.predictions
    hidden = graph.gelu(graph.module(states, head.transform.dense), config.hidden_act)
    hidden = graph.norm(hidden, head.transform.LayerNorm)
    logits = graph.module(hidden, head.decoder)
    graph.output(
        graph.node("ArgMax", logits, axis=-1, keepdims=0), "next_tokens", TensorProto.INT64
    )
    return graph.model("blip_text_decoder_step")


def linear_graph(linear: nn.Linear, block_size: int = BLOCK_SIZE) -> onnx.ModelProto:
    """One linear layer as the decoder's graph computes it, input `x`, output `y`: what the
    benchmark measures this kernel's fidelity with."""
    graph = _Graph(block_size, 1, linear.in_features)
    x = graph.input("x", TensorProto.FLOAT, ["rows", linear.in_features])
    graph.output(graph.module(x, linear), "y", TensorProto.FLOAT, ["rows", linear.out_features])
    return graph.model("linear")


class _Graph:
    """The handful of ONNX building blocks a BERT-style decoder step needs."""

    def __init__(self, block_size: int, heads: int, hidden_size: int) -> None:
        self.block_size, self.heads_count = block_size, heads
        self.head_size = hidden_size // heads
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names = 0
        self.scale = self.head_size**-0.5
        self._split_heads = self.constant(np.array([0, heads, 1, self.head_size], "i8"))
        self._split_heads_t = self.constant(np.array([0, heads, self.head_size, 1], "i8"))
        self._merge_heads = self.constant(np.array([0, hidden_size], "i8"))

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
        """`x @ weight.T + bias` with the weight in int8 blocks (`MatMulNBits`)."""
        quantized, scales = quantize_blocks(weight.detach().float(), self.block_size)
        out_features, in_features = weight.shape
        optional = [] if bias is None else ["", "", self.constant(bias.detach().float().numpy())]
        return self.node(
            "MatMulNBits",
            x,
            self.constant(quantized),
            self.constant(scales),
            *optional,  # no zero points (128 is implied), no reordering, then the bias
            K=in_features,
            N=out_features,
            bits=8,
            block_size=self.block_size,
            accuracy_level=4,  # int8 products: what makes it fast
        )

    def module(self, x: str, linear: nn.Linear) -> str:
        return self.linear(x, linear.weight, linear.bias)

    def norm(self, x: str, layer_norm: nn.LayerNorm) -> str:
        return self.node(
            "LayerNormalization", x, *self._affine(layer_norm), axis=-1, epsilon=layer_norm.eps
        )

    def gelu(self, x: str, activation: str) -> str:
        return self.node("Gelu", x, approximate=_GELU[activation])

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

    def add_and_norm(self, x: str, states: str, output: nn.Module) -> str:
        """BERT's output of a block: project, add the residual, LayerNorm, in two nodes."""
        projected = self.module(x, output.dense)
        norm = output.LayerNorm
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


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A float32 copy in C order, made in one pass whatever the tensor's strides."""
    copy = torch.empty(tensor.shape, dtype=torch.float32)
    copy.copy_(tensor.detach())
    return copy.numpy()
