import torch

from bench.bench_models import memory_mib
from core.accel.memory import Scratch, release_freed_memory

MIB = 2**20


def rss_mib() -> float:
    return memory_mib()["VmRSS"]


def test_a_scratch_buffer_is_reused_by_later_calls_of_no_more_elements():
    scratch = Scratch()
    first = scratch.tensor("product", (4, 1000), torch.bfloat16)
    smaller = scratch.tensor("product", (1000, 2), torch.bfloat16)
    assert smaller.shape == (1000, 2) and smaller.is_contiguous()
    assert smaller.data_ptr() == first.data_ptr()
    larger = scratch.tensor("product", (5, 1000), torch.bfloat16)
    assert larger.shape == (5, 1000)
    assert scratch.tensor("other", (10,), torch.float32).data_ptr() != larger.data_ptr()


def test_scratch_buffers_go_back_to_the_system_with_the_freed_memory():
    scratch = Scratch()
    before = rss_mib()
    scratch.tensor("keys", (200 * MIB // 4,), torch.float32).fill_(1.0)  # every page touched
    assert rss_mib() - before > 150
    release_freed_memory()
    assert rss_mib() - before < 50
    assert scratch.tensor("keys", (4,), torch.float32).shape == (4,)  # usable again
