"""A Hugging Face Inference endpoint of our own on 127.0.0.1, for `core.remote`.

It speaks what HF Inference speaks to `InferenceClient`, for the two tasks the bot uses:
- `POST /caption` (image-to-text): the image's bytes as the body → `[{"generated_text": ...}]`;
  the caption names the picture's main colour, so a test can see the right photo arrived.
- `POST /sentiment` (text-classification): `{"inputs": text}` → `[[{"label", "score"}, ...]]`,
  all three classes, labels capitalised (as many hub models have them), scores from a few
  words of the text.
Without `Authorization: Bearer <token>` the answer is 401, as on HF. `script()` queues other
answers (503 while loading, 429, broken JSON, ...) and `hang()` makes the next request wait
until the server stops. Every request is kept in `requests`.

The server runs on a loop in a thread of its own, because `InferenceClient` is synchronous and
the code under test calls it from ordinary (or worker) threads.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from PIL import Image

TOKEN = "hf_fake_good_token"
LABELS = ("Negative", "Neutral", "Positive")
_WORDS = {
    "Positive": ("happy", "love", "good", "great", "best"),
    "Negative": ("bad", "hate", "sad", "awful", "worst"),
}
_COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "grey": (128,) * 3}
_NORMAL = object()  # no scripted answer: the fake model answers


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless it is str or bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class FakeInference:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[Seen] = []
        self._scripts: dict[str, deque[Reply | None]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    # ---------------------------------------------------------------- scripting

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with `replies`, in order, then normally again."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def hang(self, path: str) -> None:
        """The next request to `path` gets no answer until the server stops."""
        with self._lock:
            self._scripts.setdefault(path, deque()).append(None)

    def seen(self, path: str) -> list[Seen]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripts.clear()

    # -------------------------------------------------------------------- HTTP

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/caption", self._caption)
        app.router.add_post("/sentiment", self._sentiment)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> tuple[bytes, web.Response | None]:
        """The body, and the answer to give instead of the normal one, if any."""
        body = await request.read()
        path = request.path.strip("/")
        with self._lock:
            self.requests.append(Seen(path, dict(request.headers), body))
            queue = self._scripts.get(path)
            scripted = queue.popleft() if queue else _NORMAL
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            error = {"error": "Invalid credentials in Authorization header"}
            return body, web.json_response(error, status=401)
        if scripted is None:
            await self._release.wait()  # until stop(): a server that never answers
            return body, web.Response(status=504)
        if scripted is not _NORMAL:
            return body, _response(scripted)
        return body, None

    async def _caption(self, request: web.Request) -> web.Response:
        body, instead = await self._receive(request)
        if instead is not None:
            return instead
        try:
            image = Image.open(io.BytesIO(body))
            image.load()
        except OSError:
            return web.json_response({"error": "cannot identify image file"}, status=400)
        colour = _main_colour(image.convert("RGB"))
        return web.json_response([{"generated_text": f" a  {colour} picture "}])

    async def _sentiment(self, request: web.Request) -> web.Response:
        body, instead = await self._receive(request)
        if instead is not None:
            return instead
        try:
            text = json.loads(body)["inputs"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "inputs is required"}, status=400)
        return web.json_response([scores_for(text)])


def scores_for(text: str) -> list[dict[str, Any]]:
    """The fake model: a class wins if one of its words is in the text; otherwise neutral."""
    words = text.lower().split()
    winner = next(
        (label for label, cues in _WORDS.items() if any(cue in words for cue in cues)), "Neutral"
    )
    others = [label for label in LABELS if label != winner]
    ranked = [(winner, 0.8), (others[0], 0.15), (others[1], 0.05)]
    return [{"label": label, "score": score} for label, score in ranked]


def _main_colour(image: Image.Image) -> str:
    r, g, b = image.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))

    def distance(name: str) -> int:
        return sum((x - y) ** 2 for x, y in zip((r, g, b), _COLOURS[name], strict=True))

    return min(_COLOURS, key=distance)


def _response(reply: Reply) -> web.Response:
    if isinstance(reply.body, bytes | str):
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        return web.Response(
            status=reply.status, body=body, headers=reply.headers, content_type="text/plain"
        )
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)
