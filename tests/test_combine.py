import pytest

from core.combine import combine


@pytest.mark.parametrize(
    ("caption", "text", "combined"),
    [
        # The original app's own records.
        (
            "a field of flowers with mountains in the background",
            "I am in love and life is good ",
            "a field of flowers with mountains in the background. I am in love and life is good",
        ),
        ("sunflowers in a field", "I am so happy", "sunflowers in a field. I am so happy"),
        ("What a sunset!", "wow", "What a sunset! wow"),
        ("Is this a cat?", "yes", "Is this a cat? yes"),
        ("a dog on a beach.", "best day", "a dog on a beach. best day"),
        ("and then…", "rain", "and then… rain"),
        ("  a boat  ", "  calm sea \n", "a boat. calm sea"),
        ("a road,", "long trip", "a road. long trip"),
        ("a road:", "long trip", "a road. long trip"),
        ("a cat", "line one\nline two", "a cat. line one\nline two"),
    ],
)
def test_combine_joins_like_the_original_app_without_doubled_punctuation(caption, text, combined):
    assert combine(caption, text) == combined


def test_combine_with_one_side_empty_keeps_the_other():
    assert combine("a cat", "   ") == "a cat"
    assert combine("", "hello") == "hello"
