import numpy as np
import torch

from bench.bench_models import memory_mib
from core.memory import hold_freed_heap, page_out, release_freed_memory


def rss_mib() -> float:
    return memory_mib()["VmRSS"]


def test_freed_heap_goes_back_to_the_system():
    # Many small blocks from the heap (not one mapping), as a model call's activations are.
    blocks = [np.ones(16_000, dtype=np.float64) for _ in range(2_000)]  # about 250 MB
    before_free = rss_mib()
    del blocks
    release_freed_memory()
    assert before_free - rss_mib() > 150


def test_paged_out_tensors_leave_memory_and_keep_their_values(tmp_path):
    # A checkpoint's tensors are views of a mapped file, as `from_pretrained` reads them.
    path = tmp_path / "weights.bin"
    torch.arange(64 * 2**20, dtype=torch.int32).numpy().tofile(path)  # 256 MB
    mapped = torch.from_file(str(path), shared=False, size=64 * 2**20, dtype=torch.int32)
    total = int(mapped.sum(dtype=torch.int64))  # every page read in
    before = rss_mib()
    page_out(mapped)
    assert before - rss_mib() > 150
    assert int(mapped.sum(dtype=torch.int64)) == total  # read back from the file
    heap = torch.ones(1000)
    page_out(heap)  # smaller than a page or not: the values stay
    assert int(heap.sum()) == 1000


def test_held_heap_stays_for_the_next_call_until_released():
    hold_freed_heap()  # as loading a model does
    block = np.ones(12_500_000)  # 100 MB in one block, as a batch's activations are
    held = rss_mib()
    del block
    assert held - rss_mib() < 20  # kept for reuse: no page faults at the next call
    release_freed_memory()
    assert held - rss_mib() > 80
