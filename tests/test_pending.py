from core.pending import Lookup, Pending, PendingCaptions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_caption_waits_for_its_text_and_is_taken_once():
    pending = PendingCaptions(ttl_seconds=60, clock=Clock())
    pending.put(1, 10, "a cat", "image")
    taken = pending.take(1, 10)
    assert isinstance(taken, Pending) and (taken.caption, taken.caption_source) == (
        "a cat",
        "image",
    )
    assert pending.take(1, 10) is Lookup.NONE


def test_members_of_one_group_never_share_a_caption():
    pending = PendingCaptions(ttl_seconds=60, clock=Clock())
    pending.put(-5, 1, "Ann's boat", "image")
    pending.put(-5, 2, "Bob's dog", "manual")
    assert pending.take(-5, 2).caption == "Bob's dog"
    assert pending.take(-5, 1).caption == "Ann's boat"


def test_the_same_user_in_two_chats_has_two_captions():
    pending = PendingCaptions(ttl_seconds=60, clock=Clock())
    pending.put(1, 7, "private", "manual")
    pending.put(-9, 7, "group", "manual")
    assert pending.peek(1, 7).caption == "private"
    assert pending.peek(-9, 7).caption == "group"


def test_an_expired_caption_is_reported_as_expired_then_forgotten():
    clock = Clock()
    pending = PendingCaptions(ttl_seconds=60, clock=clock)
    pending.put(1, 10, "a cat", "image")
    clock.now += 61
    assert pending.peek(1, 10) is None
    assert pending.take(1, 10) is Lookup.EXPIRED
    assert pending.take(1, 10) is Lookup.NONE


def test_drop_says_whether_there_was_something_to_drop():
    clock = Clock()
    pending = PendingCaptions(ttl_seconds=60, clock=clock)
    assert pending.drop(1, 10) is False
    pending.put(1, 10, "a cat", "image")
    assert pending.drop(1, 10) is True
    pending.put(1, 10, "a cat", "image")
    clock.now += 120
    assert pending.drop(1, 10) is False
