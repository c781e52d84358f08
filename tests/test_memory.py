import numpy as np

from bench.bench_models import memory_mib
from core.memory import release_freed_memory


def rss_mib() -> float:
    return memory_mib()["VmRSS"]


def test_freed_heap_goes_back_to_the_system():
    # Many small blocks from the heap (not one mapping), as a model call's activations are.
    blocks = [np.ones(16_000, dtype=np.float64) for _ in range(2_000)]  # about 250 MB
    before_free = rss_mib()
    del blocks
    release_freed_memory()
    assert before_free - rss_mib() > 150
