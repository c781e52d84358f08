"""`core.remote` against a real HTTP endpoint on 127.0.0.1, through the real `InferenceClient`.

conftest.py turns huggingface_hub's offline mode on for the whole session; these tests turn
it off for the fake endpoint only (`online`), which is what HF_HUB_OFFLINE would block.
Retries never sleep here: `Backoff(sleep=waits.append)` records each wait instead.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time

import huggingface_hub.constants
import pytest
from PIL import Image

from core import cli
from core.config import Settings
from core.errors import ModelAuthError, ModelBusyError, ModelLoadError, ModelServiceError
from core.images import load_image
from core.pipeline import IMAGE, Analysis, Pipeline
from core.remote import BUSY, Backoff, RemoteCaptioner, RemoteClassifier
from core.sentiment_base import Sentiment
from tests.child_env import child_env
from tests.fake_inference import TOKEN, FakeInference, Reply
from tests.pictures import picture

BLIP = "Salesforce/blip-image-captioning-base"
ROBERTA = "cardiffnlp/twitter-roberta-base-sentiment-latest"


@pytest.fixture(scope="module")
def endpoint():
    with FakeInference() as server:
        yield server


@pytest.fixture
def server(endpoint, online):
    endpoint.clear()
    yield endpoint
    endpoint.clear()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def waits() -> list[float]:
    return []


def captioner(server, waits, **kwargs) -> RemoteCaptioner:
    kwargs.setdefault("token", TOKEN)
    return RemoteCaptioner.connect(
        BLIP, endpoint=server.url("caption"), backoff=Backoff(sleep=waits.append), **kwargs
    )


def classifier(server, waits, **kwargs) -> RemoteClassifier:
    kwargs.setdefault("token", TOKEN)
    return RemoteClassifier.connect(
        ROBERTA, endpoint=server.url("sentiment"), backoff=Backoff(sleep=waits.append), **kwargs
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------- success


def test_a_photo_is_posted_as_a_small_jpeg_and_its_caption_comes_back(server, waits):
    captions = captioner(server, waits)
    photos = [load_image(picture((1200, 900), (250, 10, 10))), load_image(picture((50, 40), 0))]
    assert captions(photos) == ["a red picture", "a grey picture"]
    probe, *sent = server.seen("caption")
    assert len(sent) == 2
    for request in [probe, *sent]:
        assert request.headers["Content-Type"] == "image/jpeg"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    big = Image.open(io.BytesIO(max(sent, key=lambda r: len(r.body)).body))
    assert big.format == "JPEG" and big.size == (512, 384)  # shorter side cut to 384
    assert captions.input_size == 384 and waits == []


def test_texts_are_classified_with_every_class_kept_and_labels_lowercased(server, waits):
    classify = classifier(server, waits)
    results = classify(["@ann I am so happy http://t.co/x", "bad day", "a table"])
    assert [r.label for r in results] == ["positive", "negative", "neutral"]
    for result in results:
        assert isinstance(result, Sentiment)
        assert set(result.scores) == {"negative", "neutral", "positive"}
        assert result.score == result.scores[result.label] == 0.8
    posted = [json.loads(r.body)["inputs"] for r in server.seen("sentiment")]
    assert posted[0] == "hello"  # the start-up check
    assert "@user I am so happy http" in posted[1:]  # the model card's preprocessing


def test_nothing_to_do_makes_no_request(server, waits):
    captions, classify = captioner(server, waits), classifier(server, waits)
    server.clear()
    assert captions([]) == [] and classify([]) == []
    assert server.requests == []


# ------------------------------------------------------------------- 401/403


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_stops_the_start_with_what_to_fix(server, waits, status):
    server.script("sentiment", Reply(status, {"error": "Invalid credentials"}))
    with pytest.raises(ModelLoadError) as refused:
        classifier(server, waits)
    message = str(refused.value)
    assert "SENTIMENT_BACKEND=api" in message and server.url("sentiment") in message
    assert f"HTTP {status}" in message and "HF_TOKEN" in message
    assert waits == [] and len(server.seen("sentiment")) == 1


def test_a_wrong_token_is_caught_by_the_start_up_check(server, waits):
    with pytest.raises(ModelLoadError, match="refused the token"):
        captioner(server, waits, token="hf_wrong")


def test_a_token_revoked_later_reaches_the_person_as_an_error(server, waits):
    classify = classifier(server, waits)
    server.script("sentiment", Reply(401, {"error": "Invalid credentials"}))
    with pytest.raises(ModelAuthError, match="HF_TOKEN") as refused:
        classify(["hello there"])
    assert "401" in str(refused.value) and waits == []


# --------------------------------------------------------------- 503 and 429


def test_a_loading_model_is_waited_for_as_long_as_it_says(server, waits):
    classify = classifier(server, waits)
    loading = Reply(503, {"error": "Model is currently loading", "estimated_time": 7.5})
    server.script("sentiment", loading, loading)
    assert classify(["so happy"])[0].label == "positive"
    assert waits == [7.5, 7.5]


def test_a_long_estimate_is_capped_and_without_a_hint_the_wait_doubles(server, waits):
    captions = captioner(server, waits)
    server.script(
        "caption",
        Reply(503, {"error": "Model is currently loading", "estimated_time": 600}),
        Reply(502, "Bad Gateway"),
        Reply(504, "Gateway Timeout"),
    )
    assert captions([load_image(picture((40, 40), (0, 0, 250)))]) == ["a blue picture"]
    assert waits == [10.0, 2.0, 4.0]


def test_rate_limiting_is_retried_a_bounded_number_of_times_then_busy(server, waits):
    classify = classifier(server, waits)
    server.clear()
    server.script("sentiment", *[Reply(429, {"error": "rate limit"}, {"Retry-After": "3"})] * 10)
    with pytest.raises(ModelBusyError) as busy:
        classify(["hello"])
    assert str(busy.value) == BUSY == "The model service is busy, try again in a minute."
    assert waits == [3.0, 3.0, 3.0] and len(server.seen("sentiment")) == 4


def test_a_busy_model_at_start_lets_the_program_start(server, waits):
    server.script("sentiment", Reply(503, {"error": "loading", "estimated_time": 20}))
    classify = classifier(server, waits)
    assert waits == []  # the start-up check does not wait
    assert classify(["great news"])[0].label == "positive"


# ------------------------------------------------------------------ timeouts


def test_a_silent_service_times_out_once_without_retries(server, waits):
    classify = classifier(server, waits, timeout=0.3)
    server.clear()
    server.hang("sentiment")
    started = time.monotonic()
    with pytest.raises(ModelBusyError, match=r"did not answer within 0\.3 s"):
        classify(["hello"])
    assert time.monotonic() - started < 5
    assert waits == [] and len(server.seen("sentiment")) == 1


def test_a_silent_service_at_start_is_only_a_warning(server, waits, caplog):
    server.hang("caption")
    captions = captioner(server, waits, timeout=0.3)
    assert "not ready" in caplog.text
    assert captions([load_image(picture((40, 40), (0, 250, 0)))]) == ["a green picture"]


def test_an_unreachable_endpoint_stops_the_start(online, waits):
    endpoint = f"http://127.0.0.1:{closed_port()}/caption"
    with pytest.raises(ModelLoadError, match="cannot be reached") as failed:
        RemoteCaptioner.connect(BLIP, endpoint=endpoint, backoff=Backoff(sleep=waits.append))
    assert "CAPTION_ENDPOINT" in str(failed.value)


# ------------------------------------------------------------ malformed answers


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 from a proxy</html>",
        {"generated_text": "not in a list"},
        [{"label": "positive"}],
        [[{"label": "positive", "score": "high"}]],
        [[{"label": "", "score": 0.5}]],
        [[]],
    ],
)
def test_an_answer_that_cannot_be_read_is_an_error_not_a_label(server, waits, body):
    classify = classifier(server, waits)
    server.script("sentiment", Reply(200, body))
    with pytest.raises(ModelServiceError, match="could not read") as unreadable:
        classify(["hello"])
    assert not isinstance(unreadable.value, ModelBusyError) and waits == []


@pytest.mark.parametrize("body", ["not json", [{"generated_text": 5}], {"foo": 1}])
def test_an_unreadable_caption_is_an_error(server, waits, body):
    captions = captioner(server, waits)
    server.script("caption", Reply(200, body))
    with pytest.raises(ModelServiceError, match="could not read"):
        captions([load_image(picture())])


def test_a_service_that_is_not_a_classifier_stops_the_start(server, waits):
    server.script("sentiment", Reply(200, [{"generated_text": "a cat"}]))
    with pytest.raises(ModelLoadError, match="cannot be used as a text-classification model"):
        classifier(server, waits)


def test_an_unknown_model_stops_the_start_and_points_at_the_endpoint_setting(server, waits):
    server.script("caption", Reply(404, {"error": "Model not found"}))
    with pytest.raises(ModelLoadError, match="CAPTION_ENDPOINT"):
        captioner(server, waits)


def test_offline_mode_stops_the_start_clearly(endpoint, waits):
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # as conftest.py set it
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        classifier(endpoint, waits)


# ----------------------------------------------------------- the whole pipeline


def api_settings(server: FakeInference, **extra: str) -> Settings:
    env = {
        "CAPTION_BACKEND": "api",
        "CAPTION_ENDPOINT": server.url("caption"),
        "SENTIMENT_BACKEND": "api",
        "SENTIMENT_ENDPOINT": server.url("sentiment"),
        "HF_TOKEN": TOKEN,
        **extra,
    }
    return Settings.from_env(env, dotenv_path=None)


def test_the_api_pipeline_gives_the_same_analysis_as_the_local_one(server, tiny_models):
    remote = Pipeline.from_settings(api_settings(server))
    local = Pipeline.from_settings(
        Settings.from_env(
            {
                "CAPTION_MODEL": str(tiny_models.caption),
                "SENTIMENT_MODEL": str(tiny_models.sentiment),
            },
            dotenv_path=None,
        )
    )
    photo = picture((800, 600), (240, 20, 20))
    got, expected = remote.analyze("I am so happy", image=photo), local.analyze("x", image=photo)
    assert type(got) is type(expected) is Analysis
    assert got.caption == "a red picture" and got.caption_source == IMAGE
    assert got.combined == "a red picture. I am so happy"
    for mine, theirs in [
        (got.sentiment, expected.sentiment),
        (got.caption_sentiment, expected.caption_sentiment),
        (got.text_sentiment, expected.text_sentiment),
    ]:
        assert type(mine) is type(theirs) is Sentiment
        assert set(mine.scores) == set(theirs.scores) == {"negative", "neutral", "positive"}
        assert mine.label in mine.scores and isinstance(mine.score, float)
    assert (got.sentiment.label, got.text_sentiment.label) == ("positive", "positive")
    assert got.caption_sentiment.label == "neutral"
    record = got.to_record(chat_id=1, user_id=2)
    assert (record.label, record.score) == ("positive", 0.8)


def test_each_backend_is_chosen_on_its_own(server, tiny_models):
    env = {
        "CAPTION_MODEL": str(tiny_models.caption),  # local, as the original app had it
        "SENTIMENT_BACKEND": "api",
        "SENTIMENT_ENDPOINT": server.url("sentiment"),
        "HF_TOKEN": TOKEN,
    }
    pipeline = Pipeline.from_settings(Settings.from_env(env, dotenv_path=None))
    assert type(pipeline.captioner).__name__ == "Captioner"
    assert isinstance(pipeline.classifier, RemoteClassifier)
    assert pipeline.analyze("so happy", image=picture()).sentiment.label == "positive"


def test_a_failed_remote_call_is_never_recorded(server, tmp_path, monkeypatch, capsys):
    records = tmp_path / "records.csv"
    env = {
        "CAPTION_BACKEND": "api",
        "CAPTION_ENDPOINT": server.url("caption"),
        "SENTIMENT_BACKEND": "api",
        "SENTIMENT_ENDPOINT": server.url("sentiment"),
        "HF_TOKEN": TOKEN,
        "RECORDS_PATH": str(records),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    Pipeline.from_settings(Settings.from_env(dotenv_path=None))  # connected and cached
    server.script("sentiment", Reply(200, "<html>oops</html>"))
    assert cli.main(["analyze", "--caption", "a cat", "--text", "so happy"]) == 2
    assert "could not read" in capsys.readouterr().err
    assert not records.exists()
    assert cli.main(["analyze", "--caption", "a cat", "--text", "so happy"]) == 0
    assert records.read_text().count("\n") == 2  # the header and one good row


def test_with_both_backends_remote_torch_is_never_imported(server):
    script = """
import json, sys
from core.config import Settings
from core.pipeline import Pipeline
import bot.app  # everything `python -m bot` imports
settings = Settings.from_env(dotenv_path=None)
pipeline = Pipeline.from_settings(settings)
print(json.dumps({name: name in sys.modules for name in ("torch", "transformers", "ray")}))
"""
    env = {
        **child_env(drop=("HF_", "TRANSFORMERS_")),
        "TELEGRAM_BOT_TOKEN": "1:test",
        "CAPTION_BACKEND": "api",
        "CAPTION_ENDPOINT": server.url("caption"),
        "SENTIMENT_BACKEND": "api",
        "SENTIMENT_ENDPOINT": server.url("sentiment"),
        "HF_TOKEN": TOKEN,
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"torch": False, "transformers": False, "ray": False}
    assert len(server.seen("caption")) == len(server.seen("sentiment")) == 1  # the checks


def test_the_bot_stops_at_start_with_one_line_when_the_token_is_refused(server, tmp_path):
    env = {
        **child_env(drop=("HF_", "TRANSFORMERS_")),
        "TELEGRAM_BOT_TOKEN": "1:test",
        "RECORDS_PATH": str(tmp_path / "records.csv"),
        "CAPTION_BACKEND": "api",
        "CAPTION_ENDPOINT": server.url("caption"),
        "SENTIMENT_BACKEND": "api",
        "SENTIMENT_ENDPOINT": server.url("sentiment"),
        "HF_TOKEN": "hf_revoked",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: CAPTION_BACKEND=api: ") and "refused the token" in line
    assert "HTTP 401" in line and "HF_TOKEN" in line and "hf_revoked" not in done.stderr
    assert not (tmp_path / "records.csv").exists()
