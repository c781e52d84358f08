"""Which number format each model runs in: decided once, when the model is loaded.

- `fp32`: the original app's; every other mode is measured against it.
- `bf16`: weights and activations in bfloat16. Fast on CPUs with `avx512_bf16` or AMX and on
  GPUs; elsewhere it is emulated and slower than fp32, so it falls back to fp32 with a log line.
  On such a CPU the linear layers' weights are also prepacked for oneDNN (same numbers, faster).
- `fp16`: float16, for GPUs; on a CPU it falls back to fp32 with a log line.
- `int8`: int8 weights, CPU only (on a GPU it falls back to half precision). On a CPU with
  native bf16 they are weight-only int8: every `nn.Linear` keeps int8 weights with one scale
  per output channel and computes in bf16 (and the vocabulary tables keep int8 rows,
  `core.accel.embeddings`), which keeps outputs within bf16's reach (README,
  "Precision"). Without bf16 it is PyTorch's post-training dynamic quantization: activations
  are quantized to int8 at each call too, which drifts further from fp32.
- `bf16+int8-decoder`, `fp32+int8-decoder`: the captioner in bf16 or fp32 but for its text
  decoder, which runs in int8 in ONNX Runtime (`core.accel.onnx_decoder`); what `auto` picks for it
  on a CPU with VNNI, with native bf16 or without. Not settings of their own.
- `auto`: per model and device, the fastest mode whose fidelity the benchmark
  (`python -m bench.bench_models`) has shown; the README's "Precision" section has the numbers.

`resolve` turns a requested mode into the one that will run; `apply` converts a loaded model in
place, so no fp32 copy stays alive. `Hardware` says what the device can do; it is detected, or
given by a test.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.accel import embeddings, linear_layers
from core.config import PRECISIONS

log = logging.getLogger(__name__)

FP32 = "fp32"
BF16 = "bf16"
FP16 = "fp16"
INT8 = "int8"
BF16_INT8_DECODER = "bf16+int8-decoder"
FP32_INT8_DECODER = "fp32+int8-decoder"
AUTO = "auto"
MODES = (FP32, BF16, FP16, INT8, BF16_INT8_DECODER, FP32_INT8_DECODER)
# The modes whose caption decoder runs in int8 in ONNX Runtime, and what the rest runs in.
INT8_DECODER_BASES = {BF16_INT8_DECODER: BF16, FP32_INT8_DECODER: FP32}
CHOICES = PRECISIONS  # what the settings accept: the modes and auto

# The two models, for `auto`.
CAPTION = "caption"
SENTIMENT = "sentiment"

# What the weights are loaded as: int8 quantizes a float32 model.
LOAD_DTYPES = {
    FP32: torch.float32,
    BF16: torch.bfloat16,
    FP16: torch.float16,
    INT8: torch.float32,
    BF16_INT8_DECODER: torch.float32,
    FP32_INT8_DECODER: torch.float32,
}

# CPU flags (as /proc/cpuinfo names them) that make bfloat16 matrix products fast.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# ... and int8 dot products (VNNI), which ONNX Runtime's int8 kernels build on.
INT8_DOT_CPU_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})


@dataclass(frozen=True)
class Hardware:
    """What the device that runs the models does fast."""

    device: str = "cpu"
    bf16: bool = False
    fp16: bool = False
    int8: bool = True
    int8_dot: bool = False

    @classmethod
    def detect(cls, device: str | None = None) -> Hardware:
        """The first CUDA GPU when there is one, else the CPU."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            return cls(device=device, bf16=torch.cuda.is_bf16_supported(), fp16=True, int8=False)
        return cls.for_cpu(cpu_flags())

    @classmethod
    def for_cpu(cls, flags: Iterable[str]) -> Hardware:
        engines = torch.backends.quantized.supported_engines
        return cls(
            device="cpu",
            bf16=not BF16_CPU_FLAGS.isdisjoint(flags),
            fp16=False,
            int8=any(engine in engines for engine in ("x86", "fbgemm", "qnnpack")),
            int8_dot=not INT8_DOT_CPU_FLAGS.isdisjoint(flags),
        )

    def describe(self) -> str:
        modes = ((FP32, True), (BF16, self.bf16), (FP16, self.fp16), (INT8, self.int8))
        return f"{self.device} (runs {', '.join(name for name, ok in modes if ok)})"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags; torch's own checks where /proc/cpuinfo does not exist."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    checks = {
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx_bf16": "_is_amx_tile_supported",
        "avx512_vnni": "_is_vnni_supported",
    }
    return frozenset(
        flag for flag, check in checks.items() if getattr(torch.cpu, check, lambda: False)()
    )


# `auto`, per device and model: the fastest mode whose fidelity the benchmark has shown
# (README, "Precision"). On a CPU with native bf16, bf16 stays closest to fp32
# (all-MiniLM-L6-v2 embeddings: cosine 0.99996; weight-only int8 and the int8 decoder's kernel
# both 0.9994). Where the CPU also has VNNI, the captioner's text decoder runs in int8 in ONNX
# Runtime, the rest in bf16: a lone photo's caption took 0.32–0.34 against 0.50–0.58 s in
# bf16, and eight at once went nearly as fast (4.1–4.6 against 4.5–5.0 photos/s). int8
# throughout is slower when the bot is busy (its vision encoder converts int8 weights at each
# call; three texts take 36–48 against 18–22 ms), so it remains the smallest footprint, not
# the default.
# Without native bf16, int8 is dynamic quantization and is kept to the sentiment model (a label
# is robust to its drift; dynamic int8 RoBERTa keeps its accuracy in published results); the
# captioner's vision encoder stays in fp32, as greedy decoding turns small drifts into other
# words, and its decoder runs in ONNX Runtime where the CPU has VNNI (side by side, with this
# CPU's bf16 hidden: 0.65 against 0.99 s per photo).
def _auto(model: str, hardware: Hardware) -> str:
    if hardware.device != "cpu":
        return BF16 if hardware.bf16 else FP16
    if model == SENTIMENT:
        return BF16 if hardware.bf16 else INT8
    if hardware.int8_dot:
        return BF16_INT8_DECODER if hardware.bf16 else FP32_INT8_DECODER
    return BF16 if hardware.bf16 else FP32


def resolve(requested: str, *, model: str, hardware: Hardware, variable: str = "") -> str:
    """The mode that will run: `auto` made concrete, and a mode the hardware runs badly replaced.

    `variable` names the setting in the log line, so an operator knows what to change.
    """
    if requested not in (*MODES, AUTO):
        raise ValueError(f"unknown precision {requested!r}; use one of {', '.join(CHOICES)}")
    setting = f"{variable}={requested}" if variable else requested
    if requested == AUTO:
        chosen = _auto(model, hardware)
        log.info("%s: %s model runs in %s on %s", setting, model, chosen, hardware.describe())
        return chosen
    fallback = None
    if requested == BF16 and not hardware.bf16:
        fallback = FP16 if hardware.fp16 else FP32
        why = "this device has no fast bfloat16 (CPUs need avx512_bf16 or AMX)"
    elif requested == FP16 and not hardware.fp16:
        fallback = FP32
        why = "float16 is for GPUs, and this device has none"
    elif requested in INT8_DECODER_BASES and not (hardware.device == "cpu" and hardware.int8_dot):
        base = INT8_DECODER_BASES[requested]
        fallback = resolve(base, model=model, hardware=hardware, variable=variable)
        why = "its int8 decoder needs a CPU with VNNI"
    elif requested == BF16_INT8_DECODER and not hardware.bf16:
        fallback = FP32_INT8_DECODER
        why = "this CPU has no fast bfloat16 (it needs avx512_bf16 or AMX)"
    elif requested == INT8 and not hardware.int8:
        fallback = (BF16 if hardware.bf16 else FP16) if hardware.fp16 else FP32
        why = "dynamic int8 quantization runs on CPUs only"
    if fallback is None:
        return requested
    log.warning("%s: %s; the %s model runs in %s instead.", setting, why, model, fallback)
    return fallback


def apply(
    model: nn.Module,
    precision: str,
    *,
    hardware: Hardware,
    dynamic_int8_only: Iterable[str] | None = None,
    many_rows: Iterable[str] = (),
) -> nn.Module:
    """Convert `model` in place to `precision` on `hardware` and return it.

    bf16 and fp16 cast the weights (a model loaded in that dtype is left as it is); on a CPU,
    bf16 weights are then prepacked, each with the GELU that follows it fused in, but for the
    layers under `many_rows` (submodule names) that `core.accel.linear_layers.pack_linear_layers`
    leaves plain. bf16+int8-decoder and fp32+int8-decoder do what bf16 and fp32 do: their
    decoder has been handed to ONNX Runtime by then (`core.captioner`). int8 swaps each
    `nn.Linear` for an int8 one as the module docstring says; `dynamic_int8_only` names the
    submodules that dynamic int8 may touch (all of `model` when None). The replaced float
    layers are dropped as they are swapped, and no fp32 copy stays alive once this
    returns.
    """
    if precision == INT8 and hardware.bf16:
        linear_layers.replace_linear_layers(model, linear_layers.Int8WeightLinear)
        embeddings.quantize_word_embeddings(model)
        model.to(torch.bfloat16)  # new bf16 copies: nothing points into the fp32 file any more
    elif precision == INT8:
        targets = (
            [model]
            if dynamic_int8_only is None
            else [model.get_submodule(name) for name in dynamic_int8_only]
        )
        _copy_into_memory(model, skip=_linear_weights(targets))
        for target in targets:
            _quantize_linear_layers(target)
    elif precision in (BF16, FP16, BF16_INT8_DECODER):
        model.to(torch.float16 if precision == FP16 else torch.bfloat16)
        if precision != FP16 and hardware.device == "cpu" and linear_layers.packing_available():
            parts = [model.get_submodule(name) for name in many_rows]
            linear_layers.pack_linear_layers(model, many_rows=parts)
            linear_layers.fuse_gelu(model)
    elif precision not in (FP32, FP32_INT8_DECODER):
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(MODES)}")
    return model


def is_quantized(module: nn.Module) -> bool:
    """Holds int8 weights, of either kind."""
    return isinstance(
        module, (torch.ao.nn.quantized.dynamic.Linear, linear_layers.Int8WeightLinear)
    )


def input_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype `module` expects its inputs in: that of its first float parameter."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def _quantize_linear_layers(module: nn.Module) -> None:
    # torch.ao.quantization is deprecated in favour of the torchao package, but still ships
    # with the torch this project pins and needs no new dependency; torchao's equivalent
    # (Int8DynamicActivationInt8WeightConfig) was slower on RoBERTa without compilation
    # (36 ms against 10 ms, issue 4). Its deprecation warnings would repeat this at each start.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # One weight scale per output channel, not one per layer: all-MiniLM-L6-v2 embeddings
        # keep cosine 0.97 to fp32 against 0.94, at the same speed (README, "Precision").
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        torch.ao.quantization.quantize_dynamic(module, {nn.Linear: qconfig}, inplace=True)


def _linear_weights(modules: Iterable[nn.Module]) -> set[int]:
    return {
        id(layer.weight)
        for module in modules
        for layer in module.modules()
        if isinstance(layer, nn.Linear)
    }


def _copy_into_memory(model: nn.Module, *, skip: set[int]) -> None:
    """Give every tensor that will stay as it is (all but those in `skip`) its own memory.

    `from_pretrained` memory-maps the checkpoint, and the map lives as long as any tensor
    still points into it: the embeddings, the layer norms and the biases that the quantized
    layers keep would hold the whole fp32 file resident. Copied, they let it go once the last
    float weight is quantized.
    """
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if id(tensor) not in skip:
                tensor.data = tensor.data.clone()
