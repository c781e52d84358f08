"""Device capabilities given, not detected, so both sides of every check run on any machine."""

from core.precision import Hardware

CPU_WITH_BF16 = Hardware(device="cpu", bf16=True, int8=True)
CPU_WITHOUT_BF16 = Hardware(device="cpu", bf16=False, int8=True)
GPU = Hardware(device="cuda", bf16=True, fp16=True, int8=False)
OLD_GPU = Hardware(device="cuda", bf16=False, fp16=True, int8=False)
# ... and with int8 dot products (VNNI): int8 captions decode in ONNX Runtime (core.onnx_decoder).
CPU_WITH_BF16_AND_VNNI = Hardware(device="cpu", bf16=True, int8=True, int8_dot=True)
CPU_WITH_VNNI_ONLY = Hardware(device="cpu", bf16=False, int8=True, int8_dot=True)
