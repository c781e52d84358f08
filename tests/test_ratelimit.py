from core.ratelimit import RateLimit


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
