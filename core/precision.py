"""Which number format each model runs in: decided once, when the model is loaded.

- `fp32`: the original app's; every other mode is measured against it.
- `bf16`: weights and activations in bfloat16. Fast on CPUs with `avx512_bf16` or AMX and on
  GPUs; elsewhere it is emulated and slower than fp32, so it falls back to fp32 with a log line.
- `fp16`: float16, for GPUs; on a CPU it falls back to fp32 with a log line.
- `int8`: every linear layer holds int8 weights and rounds its activations to int8 as they
  enter (`core.accel.int8`). Those a caption's decoding runs one token at a time keep blocks
  of 64 weights with a scale each, activations rounded per row and block (ONNX Runtime's
  `MatMulNBits`); those that see a whole image or text keep 7-bit weights with a scale per
  output, activations rounded per row. Vocabulary tables keep int8 rows. Each row is rounded
  on its own, so a text's numbers never depend on its batch. CPU only (on a GPU it falls back
  to half precision).
- `bf16+int8-decoder`, `fp32+int8-decoder`: the captioner in bf16 or fp32 but for its text
  decoder, which runs in int8; `auto` picks the first on CPUs with native bf16.
- `auto`: per model and device, the fastest mode whose fidelity the benchmark
  (`python -m bench.bench_models`) has shown; docs/performance.md has the numbers.

`resolve` turns a requested mode into the one that will run; `core.accel` converts and runs
the model. `Hardware` says what the device can do; it is detected (and may be capped to a
lesser CPU class, `MOOD_CPU_CLASS`), or given by a test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from core.config import CPU_CLASSES, PRECISIONS

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
AMX_BF16 = "amx_bf16"
# What each CPU class of `core.config.CPU_CLASSES` adds to the one before it: a machine capped
# to a class keeps only its own flags that the class and those before it name.
_CLASS_FLAGS = {
    "avx2": {"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c"},
    "avx512": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"},
    "avx512_bf16": {"avx512_vnni", "avx_vnni", "avx512_bf16"},
    "amx": {"amx_bf16", "amx_tile", "amx_int8"},
}
# Flags no class removes: the ones that say nothing of vector width or number formats.
_KEPT_FLAGS_PREFIXES = ("avx512", "avx_", "amx")


def cap_flags(flags: Iterable[str], cpu_class: str) -> frozenset[str]:
    """`flags` as a CPU of `cpu_class` would show them; all of them when `cpu_class` is empty."""
    flags = frozenset(flags)
    if not cpu_class:
        return flags
    allowed = set().union(
        *(_CLASS_FLAGS[name] for name in CPU_CLASSES[: CPU_CLASSES.index(cpu_class) + 1])
    )
    return frozenset(
        flag
        for flag in flags
        if flag in allowed
        or not (flag.startswith(_KEPT_FLAGS_PREFIXES) or flag in _CLASS_FLAGS["avx2"])
    )


def cpu_class(flags: Iterable[str]) -> str:
    """The highest class of `core.config.CPU_CLASSES` whose defining flag is among `flags`."""
    flags = frozenset(flags)
    defining = {
        "amx": "amx_bf16",
        "avx512_bf16": "avx512_bf16",
        "avx512": "avx512f",
        "avx2": "avx2",
    }
    return next((name for name in reversed(CPU_CLASSES) if defining[name] in flags), "below avx2")


@dataclass(frozen=True)
class Hardware:
    """What the device that runs the models does fast."""

    device: str = "cpu"
    bf16: bool = False
    fp16: bool = False
    int8: bool = True

    amx: bool = False

    @classmethod
    def detect(cls, device: str | None = None, *, cpu_class: str = "") -> Hardware:
        """The first CUDA GPU when there is one, else the CPU, capped to `cpu_class` if given."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            return cls(device=device, bf16=torch.cuda.is_bf16_supported(), fp16=True, int8=False)
        return cls.for_cpu(cap_flags(cpu_flags(), cpu_class))

    @classmethod
    def for_cpu(cls, flags: Iterable[str]) -> Hardware:
        flags = frozenset(flags)
        return cls(
            device="cpu",
            bf16=not BF16_CPU_FLAGS.isdisjoint(flags),
            fp16=False,
            int8=True,
            amx=AMX_BF16 in flags,
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
# (docs/performance.md). On a CPU with native bf16, bf16 stays closest to fp32 (the benchmark's
# real all-MiniLM-L6-v2: cosine 0.99996), and the captioner's text decoder runs in int8 in ONNX
# Runtime, whose kernel reads the weights at memory speed on every CPU class. Without bf16,
# both models run in int8: a photo's vision encoder and a reply's texts are compute-bound,
# and int8 products are the only way past float32's pace there (about twice it, for half the
# memory). Every int8 kernel rounds each row on its own, so a text's or photo's numbers never
# depend on what other chats sent in the same batch.
def _auto(model: str, hardware: Hardware) -> str:
    if hardware.device != "cpu":
        return BF16 if hardware.bf16 else FP16
    if model == SENTIMENT:
        return BF16 if hardware.bf16 else INT8
    return BF16_INT8_DECODER if hardware.bf16 else INT8


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
    elif requested in INT8_DECODER_BASES and hardware.device != "cpu":
        base = INT8_DECODER_BASES[requested]
        fallback = resolve(base, model=model, hardware=hardware, variable=variable)
        why = "its int8 decoder runs on CPUs only"
    elif requested == BF16_INT8_DECODER and not hardware.bf16:
        fallback = FP32_INT8_DECODER
        why = "this CPU has no fast bfloat16 (it needs avx512_bf16 or AMX)"
    elif requested == INT8 and not hardware.int8:
        fallback = (BF16 if hardware.bf16 else FP16) if hardware.fp16 else FP32
        why = "int8 runs on CPUs only"
    if fallback is None:
        return requested
    log.warning("%s: %s; the %s model runs in %s instead.", setting, why, model, fallback)
    return fallback
