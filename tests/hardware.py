"""Device capabilities given, not detected, so both sides of every check run on any machine.

`THIS_GPU` is the exception: this machine's own GPU, detected, for the parameter sets made
with `on_gpu`, which run where a CUDA GPU is and are skipped elsewhere.
"""

import pytest
import torch

from core.precision import Hardware

CPU_WITH_BF16 = Hardware(device="cpu", bf16=True, int8=True)
CPU_WITHOUT_BF16 = Hardware(device="cpu", bf16=False, int8=True)
GPU = Hardware(device="cuda", bf16=True, fp16=True, int8=False)
OLD_GPU = Hardware(device="cuda", bf16=False, fp16=True, int8=False)

HAS_GPU = torch.cuda.is_available()
THIS_GPU = Hardware.detect("cuda") if HAS_GPU else GPU
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")


def on_gpu(mode: str, *values: object) -> object:
    """A parameter set for `mode` on this machine's GPU: skipped where there is none."""
    return pytest.param(mode, *values, marks=needs_gpu, id=f"{mode}-on-the-gpu")
