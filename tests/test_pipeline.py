import pytest

from core.captioner import Captioner
from core.config import Settings
from core.errors import BadImageError, BadTextError
from core.pipeline import IMAGE, MANUAL, Pipeline
from tests.pictures import picture
from tests.tiny_models import build_tiny_blip


def assert_same(batched, alone):
    """Padding in a batch moves scores by float noise only."""
    assert batched.label == alone.label
    assert batched.scores == pytest.approx(alone.scores, abs=1e-5)


@pytest.fixture(scope="module")
def pipeline(tiny_models):
    settings = Settings.from_env(
        {"CAPTION_MODEL": str(tiny_models.caption), "SENTIMENT_MODEL": str(tiny_models.sentiment)},
        dotenv_path=None,
    )
    return Pipeline.from_settings(settings)


def test_models_are_loaded_once_and_shared(pipeline, tiny_models):
    again = Pipeline.from_settings(
        Settings.from_env(
            {
                "CAPTION_MODEL": str(tiny_models.caption),
                "SENTIMENT_MODEL": str(tiny_models.sentiment),
            },
            dotenv_path=None,
        )
    )
    assert again.captioner is pipeline.captioner and again.classifier is pipeline.classifier


def test_a_photo_and_a_text_give_a_labelled_analysis(pipeline):
    analysis = pipeline.analyze("I am so happy", image=picture((40, 40), (250, 200, 0)))
    assert analysis.caption_source == IMAGE and analysis.caption
    assert analysis.combined == f"{analysis.caption}. I am so happy"
    assert analysis.sentiment.label in {"negative", "neutral", "positive"}
    assert_same(analysis.sentiment, pipeline.classifier([analysis.combined])[0])


def test_a_typed_caption_skips_the_caption_model(pipeline):
    analysis = pipeline.analyze("I feel bad ", caption="a car crashed into a pole")
    assert analysis.caption_source == MANUAL
    assert analysis.combined == "a car crashed into a pole. I feel bad"


def test_caption_and_text_are_also_scored_alone(pipeline):
    analysis = pipeline.classify("sunflowers in a field", "life is hard")
    alone = pipeline.classifier(["sunflowers in a field", "life is hard"])
    assert_same(analysis.caption_sentiment, alone[0])
    assert_same(analysis.text_sentiment, alone[1])


def test_the_record_keeps_the_original_columns_values(pipeline):
    analysis = pipeline.classify("sunflowers in a field", "I am so happy")
    record = analysis.to_record(chat_id=5, user_id=7)
    assert record.image_caption == "sunflowers in a field"
    assert record.user_text == "I am so happy"
    assert record.combined_input == "sunflowers in a field. I am so happy"
    assert (record.label, record.score) == (analysis.sentiment.label, analysis.sentiment.score)
    assert (record.chat_id, record.user_id, record.caption_source) == (5, 7, MANUAL)
    assert record.timestamp.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(("caption", "text"), [("a cat", "   "), ("  ", "hello")])
def test_empty_parts_are_refused_clearly(pipeline, caption, text):
    with pytest.raises(BadTextError, match="empty"):
        pipeline.classify(caption, text)


def test_a_bad_image_is_refused_before_any_model_work(pipeline):
    with pytest.raises(BadImageError, match="not an image"):
        pipeline.analyze("hi", image=b"GIF89a... not really")


def test_a_photo_the_model_cannot_describe_is_refused_clearly(tmp_path, pipeline):
    silent = Pipeline(
        Captioner.from_pretrained(str(build_tiny_blip(tmp_path / "m", empty_captions=True))),
        pipeline.classifier,
    )
    with pytest.raises(BadImageError, match="could not describe"):
        silent.analyze("hi", image=picture())


def test_warm_up_runs_both_models_once_and_changes_no_result(pipeline):
    before = pipeline.analyze("I am so happy", image=picture((40, 40), (250, 200, 0)))
    assert pipeline.warm_up() > 0
    after = pipeline.analyze("I am so happy", image=picture((40, 40), (250, 200, 0)))
    assert after.caption == before.caption
    assert_same(after.sentiment, before.sentiment)
