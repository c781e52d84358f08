from bot.pending import Lookup, Pending, PendingCaptions


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


def test_captions_survive_a_restart_when_saved_to_a_file(tmp_path):
    clock = Clock()
    path = tmp_path / "state" / "pending.json"
    before = PendingCaptions(ttl_seconds=60, clock=clock, path=path)
    before.put(-5, 1, 'Ann\'s boat ⛵ "quoted"', "image", prompt_message_id=42)
    before.put(-5, 2, "Bob's dog", "manual")
    before.take(-5, 2)
    after = PendingCaptions(ttl_seconds=60, clock=clock, path=path)
    assert after.take(-5, 1) == Pending('Ann\'s boat ⛵ "quoted"', "image", clock.now, 42)
    assert after.take(-5, 2) is Lookup.NONE
    assert PendingCaptions(ttl_seconds=60, clock=clock, path=path).take(-5, 1) is Lookup.NONE


def test_a_damaged_state_file_starts_empty_instead_of_crashing(tmp_path, caplog):
    path = tmp_path / "pending.json"
    path.write_text('{"1:2": {"caption": ')
    pending = PendingCaptions(ttl_seconds=60, path=path)
    assert pending.take(1, 2) is Lookup.NONE
    assert "could not be read" in caplog.text
    pending.put(1, 2, "fresh", "manual")
    assert PendingCaptions(ttl_seconds=60, path=path).peek(1, 2).caption == "fresh"


def test_captions_expired_long_ago_are_forgotten_on_the_next_put():
    clock = Clock()
    pending = PendingCaptions(ttl_seconds=60, clock=clock)
    pending.put(1, 1, "old", "manual")
    clock.now += 2 * 24 * 3600
    pending.put(2, 2, "new", "manual")
    assert pending.take(1, 1) is Lookup.NONE
