"""`core.serve` on a real Ray, started here: the tiny models as Ray Serve deployments, and the bot
end to end with both `api` backends pointed at them.

Ray starts once for the module (about a minute on 2 cores: each replica imports torch), in a
temporary folder of its own, and is shut down at the end.
"""

from __future__ import annotations

import base64
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import huggingface_hub.constants
import pytest
import ray
from ray import serve

from bot import replies
from core.config import Settings
from core.images import load_image
from core.pipeline import Pipeline
from core.remote import BLIP_INPUT_SIZE, _jpeg
from core.sentiment_base import Sentiment
from core.serve import CAPTION, MAX_UPLOAD_BYTES, SENTIMENT, deploy
from tests.bot_harness import bot_settings, running_bot
from tests.pictures import picture

pytestmark = pytest.mark.timeout(600)

# The bot's micro-batching and the deployments' @serve.batch alike: a batch goes as soon as it
# has MAX_BATCH requests (InferenceClient's parallel requests from one bot batch, four), so
# the long window only holds back the remainder.
BATCHING = {"MAX_BATCH": "4", "BATCH_WINDOW_MS": "1000"}
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (20, 20, 20), (240,) * 3]


@dataclass(frozen=True)
class Served:
    settings: Settings
    handles: dict
    root: str

    def url(self, name: str) -> str:
        return f"{self.root}/{name}"

    async def batch_sizes(self, name: str) -> list[int]:
        """Items per model call so far, in the deployment's one replica."""
        return await self.handles[name].batch_sizes.remote()

    def backends(self) -> dict[str, str]:
        """The bot's settings for both `api` backends on these deployments."""
        return {
            "CAPTION_BACKEND": "api",
            "CAPTION_ENDPOINT": self.url(CAPTION),
            "SENTIMENT_BACKEND": "api",
            "SENTIMENT_ENDPOINT": self.url(SENTIMENT),
        }


def local_settings(tiny_models, **extra: str) -> Settings:
    env = {"CAPTION_MODEL": str(tiny_models.caption), "SENTIMENT_MODEL": str(tiny_models.sentiment)}
    return Settings.from_env({**env, "MODEL_PRECISION": "fp32", **extra}, dotenv_path=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_models) -> Iterator[Served]:
    port = free_port()
    settings = local_settings(tiny_models, SERVE_PORT=str(port), **BATCHING)
    # Short: Ray's socket paths must fit in 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    with pytest.MonkeyPatch.context() as patch:
        # A cluster on loopback for this module: no token to write into ~/.ray.
        patch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir)
        try:
            yield Served(settings, deploy(settings), f"http://127.0.0.1:{port}")
        finally:
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def online(monkeypatch):
    """InferenceClient refuses to call anything in offline mode, which conftest.py sets."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def uploaded(photo: bytes) -> bytes:
    """The photo as the `api` backend uploads it (a JPEG), which is what the deployment sees."""
    return _jpeg(load_image(photo), BLIP_INPUT_SIZE)


async def test_the_bot_on_ray_serve_batches_chats_and_replies_as_the_local_pipeline(
    api, served, tiny_models, tmp_path, online
):
    before = {name: len(await served.batch_sizes(name)) for name in (CAPTION, SENTIMENT)}
    records = tmp_path / "records.csv"
    settings = bot_settings(api, tiny_models, records, **served.backends(), **BATCHING)
    people = [api.user(10 + n, f"Person {n}") for n in range(len(COLOURS))]
    chats = [api.private_chat(person) for person in people]
    photos = [picture((64, 48), colour) for colour in COLOURS]
    async with running_bot(api, settings) as bot:
        for chat, person, photo in zip(chats, people, photos, strict=True):
            api.send_document(chat, person, photo, "photo.png", "image/png", caption="so happy")
        answers = [await api.wait_for_sent(chat["id"]) for chat in chats]
        rows = bot.rows()

    local = Pipeline.from_settings(local_settings(tiny_models))
    for (answer,), photo in zip(answers, photos, strict=True):
        expected = local.analyze("so happy", image=uploaded(photo))
        assert answer["text"] == replies.result(expected)
    assert len(rows) == len(COLOURS)

    captions, sentiments = [(await served.batch_sizes(name))[before[name] :] for name in before]
    assert sum(captions) == len(COLOURS) + 1  # and the start-up check's one picture
    assert sum(sentiments) == 3 * len(COLOURS) + 1  # three texts a reply, and one check
    assert max(captions) > 1 and max(sentiments) > 1, (captions, sentiments)


def test_a_picture_as_bytes_or_as_base64_json_gets_one_caption(served, tiny_models):
    photo = picture((64, 48), (30, 120, 220), fmt="JPEG")
    raw = httpx.post(served.url(CAPTION), content=photo, timeout=60)
    as_json = httpx.post(
        served.url(CAPTION),
        json={"inputs": base64.b64encode(photo).decode(), "parameters": {"max_new_tokens": 5}},
        timeout=60,
    )
    (expected,) = Pipeline.from_settings(local_settings(tiny_models)).caption([photo])
    assert raw.status_code == as_json.status_code == 200
    assert raw.json() == as_json.json() == [{"generated_text": expected}]


def test_texts_get_every_class_best_first_as_text_classification_answers(served, tiny_models):
    texts = ["I love this sunny day", "I hate waiting in the rain"]
    one = httpx.post(served.url(SENTIMENT), json={"inputs": texts[0]}, timeout=60)
    both = httpx.post(served.url(SENTIMENT), json={"inputs": texts}, timeout=60)
    best = httpx.post(
        served.url(SENTIMENT), json={"inputs": texts[0], "parameters": {"top_k": 1}}, timeout=60
    )
    classify = Pipeline.from_settings(local_settings(tiny_models)).classifier
    expected = [ranked(*classify([text])) for text in texts]  # each alone
    assert rounded(one.json()) == expected[:1]
    assert rounded(both.json()) == expected  # batched with each other: padding moves the 7th digit
    assert rounded(best.json()) == [expected[0][:1]]
    assert sorted(label for label, _ in expected[0]) == ["negative", "neutral", "positive"]


def ranked(sentiment: Sentiment) -> list[tuple[str, float]]:
    scores = ((label, round(score, 5)) for label, score in sentiment.scores.items())
    return sorted(scores, key=lambda item: -item[1])


def rounded(answer: list[list[dict]]) -> list[list[tuple[str, float]]]:
    return [[(item["label"], round(item["score"], 5)) for item in classes] for classes in answer]


@pytest.mark.parametrize(
    ("name", "request_kwargs", "status", "message"),
    [
        (CAPTION, {"content": b"not a picture"}, 400, "not an image I can read"),
        (CAPTION, {"json": {"inputs": "%%%"}}, 400, "not valid base64"),
        (CAPTION, {"content": b"\xff" * (MAX_UPLOAD_BYTES + 1)}, 413, "over 20 MiB"),
        (SENTIMENT, {"content": b"{not json"}, 400, "not JSON"),
        (SENTIMENT, {"json": {"inputs": 3}}, 400, "a text or a list of texts"),
        (SENTIMENT, {"json": {"text": "hello"}}, 400, "a text or a list of texts"),
        (SENTIMENT, {"json": {"inputs": "hi", "parameters": {"top_k": 0}}}, 400, "top_k"),
    ],
)
def test_a_bad_request_gets_a_clear_error_and_the_service_goes_on(
    served, name, request_kwargs, status, message
):
    bad = httpx.post(served.url(name), timeout=60, **request_kwargs)
    assert bad.status_code == status and message in bad.json()["error"]
    good = {"content": picture()} if name == CAPTION else {"json": {"inputs": "fine"}}
    assert httpx.post(served.url(name), timeout=60, **good).status_code == 200


def test_only_post_is_served(served):
    answer = httpx.get(served.url(SENTIMENT), timeout=60)
    assert answer.status_code == 405 and "POST" in answer.json()["error"]
