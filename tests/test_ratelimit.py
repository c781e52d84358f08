import gc
import tracemalloc

from bot.ratelimit import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_holds_within_the_window_and_frees_up_after_it():
    clock = Clock()
    limit = RateLimit(3, window_seconds=60, clock=clock)
    assert [limit.take("ann") for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now = 10
    assert limit.take("ann") == 50
    clock.now = 60
    assert limit.take("ann") == 0.0


def test_people_are_limited_separately():
    limit = RateLimit(1, clock=Clock())
    assert limit.take("ann") == 0.0
    assert limit.take("bob") == 0.0
    assert limit.take("ann") > 0


def test_people_idle_for_a_window_are_forgotten():
    """200,000 people once each held 166 MB an hour later; now a window's idleness frees it."""
    clock = Clock()
    limit = RateLimit(3, window_seconds=60, clock=clock)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for person in range(20_000):
            limit.take(person)
        held = tracemalloc.get_traced_memory()[0] - before
        clock.now += 60
        assert limit.take("someone new") == 0.0
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held > 5_000_000 and left < 100_000


def test_a_sweep_keeps_everyone_still_within_the_window():
    clock = Clock()
    limit = RateLimit(1, window_seconds=60, clock=clock)
    clock.now = 30
    assert limit.take("ann") == 0.0
    clock.now = 61  # the first sweep: ann's hit is 31 s old and still counts
    assert limit.take("bob") == 0.0
    assert limit.take("ann") == 29.0
