"""Stage 4, inside: RoBERTa's layers compiled ahead of time for this CPU (AOTInductor).

For the few dozen rows of a reply, inductor's own AMX matrix kernels (its C++ GEMM templates,
picked by max-autotune) beat the oneDNN kernels that the eager bf16 layers call, with bf16's
numbers (docs/performance.md).

Compiling takes about a minute and needs a C++ compiler, so it happens once: the package is
kept in `COMPILE_DIR`, named by a digest of the weights, the options, torch's version and the
CPU's flags, and every later start loads it. It holds the weights, so the model's own layers
are dropped once it has loaded. Where compiling or loading fails, the eager layers run, and
the log says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, RobertaForSequenceClassification

from core.accel.sentiment_encoding import Layers, encoder_layers, fuse_query_key_value, run_layers
from core.precision import cpu_flags

log = logging.getLogger(__name__)

# Part of every package's name, with the options: raise it whenever `run_layers` changes.
FORMAT = 1
PREFIX = "sentiment-layers-"
# Export traces one shape: two sequences of 24 tokens, whose 48 rows are a typical reply's
# (`core.accel.text_packing`); max-autotune picks kernels for that many rows. Every size stays
# dynamic (one sequence would fix that dimension at 1).
EXAMPLE_SEQUENCES, EXAMPLE_TOKENS = 2, 24
# A compile that has not finished by then is taken for hung: the eager layers run.
COMPILE_TIMEOUT_SECONDS = 30 * 60
# What the child process reads: the model's config and its layers' weights.
ENCODER_FILE = "encoder.pt"
INDUCTOR_OPTIONS = {
    "max_autotune": True,
    "max_autotune_gemm_backends": "CPP,ATEN",
    "freezing": True,
    # The weights as one file beside the code, read into memory once. Built into the shared
    # library (the default), they stayed mapped beside their copy: 163 MiB more RSS.
    "aot_inductor.package_constants_in_so": False,
    "aot_inductor.package_constants_on_disk_format": "binary_blob",
}


class _Encoder(nn.Module):
    """What is exported: `run_layers` over the model's own modules, so the weights are traced
    as parameters and compiled in as constants."""

    def __init__(self, model: RobertaForSequenceClassification) -> None:
        super().__init__()
        self.encoder = model.roberta.encoder
        self.heads = model.config.num_attention_heads
        self.calls = encoder_layers(model, bare=False)

    def forward(self, states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return run_layers(self.calls, self.heads, states, bias)


def compiled_layers(model: RobertaForSequenceClassification, directory: Path) -> Layers | None:
    """`model`'s layers from the package in `directory`, compiled there first if need be;
    None where that fails."""
    path = directory / f"{PREFIX}{_digest(model)}.pt2"
    if not path.is_file():
        try:
            _compile(model, path)
        except (OSError, subprocess.SubprocessError) as error:  # the eager layers run
            log.warning("Sentiment model's layers run uncompiled: %r", error)
            return None
    started = time.perf_counter()
    try:
        layers = torch._inductor.aoti_load_package(str(path))
    except Exception as error:  # a damaged package: compiled afresh at the next start
        log.warning("Sentiment model's layers run uncompiled: %r", error)
        path.unlink(missing_ok=True)
        return None
    log.info("Sentiment model's compiled layers loaded in %.2f s", time.perf_counter() - started)
    for old in directory.glob(f"{PREFIX}*.pt2"):  # older weights' or torch's: never used again
        if old != path and ".partial." not in old.name:
            old.unlink(missing_ok=True)
    return layers


def _compile(model: RobertaForSequenceClassification, path: Path) -> None:
    """Compiles in a child process: the compiler's memory (about 250 MiB on RoBERTa base) goes
    with it, and a compiler that crashes or hangs cannot take the bot down. Its working files
    (167 MiB in inductor's cache, of no use once the package is written) go too."""
    log.info("Compiling the sentiment model's layers for this CPU, once: about a minute")
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as source:
        model.config.save_pretrained(source)
        torch.save(model.roberta.encoder.state_dict(), Path(source) / ENCODER_FILE)
        here = str(Path(__file__).resolve().parent.parent)
        python_path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, "-m", __name__, source, str(path)],
            env={
                **os.environ,
                "PYTHONPATH": python_path,
                "TORCHINDUCTOR_CACHE_DIR": str(Path(source) / "inductor"),
            },
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_SECONDS,
        )
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise subprocess.SubprocessError(f"the compiler's process failed: {last[0]}")
    log.info(
        "Sentiment model's layers compiled in %.0f s, kept in %s",
        time.perf_counter() - started,
        path,
    )


def _compile_here(model: RobertaForSequenceClassification, path: Path) -> None:
    hidden = model.config.hidden_size
    dtype = next(model.roberta.encoder.parameters()).dtype
    states = torch.zeros(EXAMPLE_SEQUENCES, EXAMPLE_TOKENS, hidden, dtype=dtype)
    bias = torch.zeros(EXAMPLE_SEQUENCES, 1, EXAMPLE_TOKENS, EXAMPLE_TOKENS, dtype=dtype)
    dynamic = torch.export.Dim.DYNAMIC
    with torch.no_grad():
        program = torch.export.export(
            _Encoder(model).eval(),
            (states, bias),
            dynamic_shapes=({0: dynamic, 1: dynamic}, {0: dynamic, 2: dynamic, 3: dynamic}),
        )
        # Written beside, then renamed: another process never loads half a package.
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
        try:
            # A copy of the options: inductor adds its own keys to the dict, which names the
            # package.
            torch._inductor.aoti_compile_and_package(
                program,
                package_path=str(partial),
                inductor_configs=dict(INDUCTOR_OPTIONS),
            )
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)


def _digest(model: RobertaForSequenceClassification) -> str:
    """Names the package: what it was compiled from and for."""
    digest = hashlib.sha256(f"{FORMAT} {torch.__version__} {INDUCTOR_OPTIONS}".encode())
    digest.update(" ".join(sorted(cpu_flags())).encode())
    digest.update(model.config.to_json_string().encode())
    for name, tensor in model.roberta.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _main(source: str, path: str) -> None:
    """The child process: the model rebuilt from `_compile`'s files, all but its layers left
    unallocated (meta), then compiled into `path`."""
    with torch.device("meta"):
        model = RobertaForSequenceClassification(AutoConfig.from_pretrained(source))
    fuse_query_key_value(model)
    weights = torch.load(Path(source) / ENCODER_FILE, weights_only=True, mmap=True)
    model.roberta.encoder.load_state_dict(weights, assign=True)
    _compile_here(model.eval(), Path(path))


if __name__ == "__main__":
    _main(*sys.argv[1:])
