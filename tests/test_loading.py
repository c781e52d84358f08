"""A model that cannot be loaded stops everything with one line that says how to fix it."""

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.captioner import Captioner
from core.cli import main
from core.config import DEFAULT_CAPTION_MODEL, DEFAULT_SENTIMENT_MODEL
from core.errors import ModelLoadError
from core.sentiment import SentimentClassifier
from tests.child_env import child_env
from tests.pictures import picture


def test_an_unknown_hub_id_offline_names_the_model_and_the_fix():
    with pytest.raises(ModelLoadError) as caught:
        SentimentClassifier.from_pretrained("nobody/no-such-model")
    message = str(caught.value)
    assert "'nobody/no-such-model' (SENTIMENT_MODEL)" in message
    assert "run once with network access" in message and "local folder" in message
    assert "\n" not in message


def test_a_folder_without_weights_is_refused_clearly(tiny_models, tmp_path):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_models.caption, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelLoadError, match=r"no-weights' \(CAPTION_MODEL\)"):
        Captioner.from_pretrained(str(folder))


def test_an_empty_folder_is_refused_clearly(tmp_path):
    with pytest.raises(ModelLoadError, match=r"\(SENTIMENT_MODEL\)"):
        SentimentClassifier.from_pretrained(str(tmp_path))


def test_the_cli_prints_one_line_not_a_stack_trace(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAPTION_MODEL", str(tmp_path / "missing-model"))
    assert main(["analyze", "--caption", "a", "--text", "b", "--no-record"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Could not load the model") and "(CAPTION_MODEL)" in err
    assert "Traceback" not in err and err.count("\n") == 1


class _EmptyHub(ThreadingHTTPServer):
    """A hub that has nothing: each request's path is kept in `paths`, and answered 404."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _NotFound)
        self.paths: list[str] = []


class _NotFound(BaseHTTPRequestHandler):
    server: _EmptyHub

    def do_HEAD(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads `paths`."""


@pytest.fixture
def hub() -> Iterator[_EmptyHub]:
    server = _EmptyHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hf_home(tiny_models, tmp_path) -> Path:
    """A Hugging Face cache holding the tiny models under the app's model ids."""
    home = tmp_path / "hf"
    commit = "0" * 40
    for repo, folder in (
        (DEFAULT_CAPTION_MODEL, tiny_models.caption),
        (DEFAULT_SENTIMENT_MODEL, tiny_models.sentiment),
    ):
        cached = home / "hub" / f"models--{repo.replace('/', '--')}"
        shutil.copytree(folder, cached / "snapshots" / commit)
        (cached / "refs").mkdir()
        (cached / "refs" / "main").write_text(commit)
    return home


def analyze_online(
    hf_home: Path, hub: _EmptyHub, tmp_path: Path, *, with_peft: bool = False
) -> subprocess.CompletedProcess:
    """`python -m core analyze` on a photo with the app's models, the hub not switched off.

    `with_peft`: as where peft is installed (the GPU machines' image has it), which makes
    transformers look for a PEFT adapter beside each model. An importable `peft` is all that
    transformers checks for, and the lookup itself does not import it, so an empty one will do.
    """
    packages = tmp_path / "site"
    if with_peft:
        (packages / "peft").mkdir(parents=True)
        (packages / "peft" / "__init__.py").write_text("")
    photo = tmp_path / "photo.png"
    photo.write_bytes(picture())
    command = [sys.executable, "-m", "core", "analyze", "--image", str(photo), "--text", "yay"]
    return subprocess.run(
        [*command, "--json", "--no-record"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(
            drop=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CAPTION_", "SENTIMENT_"),
            first_on_path=packages if with_peft else None,
            HF_HOME=str(hf_home),
            HF_ENDPOINT=f"http://127.0.0.1:{hub.server_port}",
        ),
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("with_peft", [False, True], ids=["plain", "peft installed"])
def test_models_in_the_cache_load_without_asking_the_hub(hf_home, hub, tmp_path, with_peft):
    result = analyze_online(hf_home, hub, tmp_path, with_peft=with_peft)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] in {"positive", "neutral", "negative"}
    # Nothing about either model (huggingface_hub may still fetch its own registry of agents).
    models = (DEFAULT_CAPTION_MODEL, DEFAULT_SENTIMENT_MODEL)
    asked = [path for path in hub.paths if any(model in path for model in models)]
    assert asked == []


def test_a_model_partly_in_the_cache_asks_the_hub_for_the_rest(hf_home, hub, tmp_path):
    for weights in hf_home.glob("hub/models--Salesforce--*/snapshots/*/*.safetensors"):
        weights.unlink()
    result = analyze_online(hf_home, hub, tmp_path)
    assert result.returncode == 2
    assert f"Could not load the model '{DEFAULT_CAPTION_MODEL}' (CAPTION_MODEL)" in result.stderr
    assert any(DEFAULT_CAPTION_MODEL in path for path in hub.paths)


@pytest.fixture
def silent_hub() -> Iterator[int]:
    """A hub that accepts connections and never answers, as behind a firewall that drops
    packets: yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_first_start_without_the_hub_says_so_in_one_line_within_seconds(silent_hub, tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(
            drop=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "CAPTION_", "SENTIMENT_"),
            HF_HOME=str(tmp_path / "empty-cache"),
            HF_ENDPOINT=f"http://127.0.0.1:{silent_hub}",
            TELEGRAM_BOT_TOKEN="123456:TEST",
        ),
        check=False,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"'{DEFAULT_CAPTION_MODEL}' (CAPTION_MODEL)" in lines[0]
    assert "did not answer" in lines[0] and "Fix:" in lines[0]
    assert elapsed < 15, f"gave up after {elapsed:.1f} s"


def test_a_hub_that_answers_is_asked_for_the_model_itself(hub, tmp_path):
    """The quick check lets the download go ahead: it is the download that reports a 404."""
    result = analyze_online(tmp_path / "empty-cache", hub, tmp_path)
    assert result.returncode == 2
    assert f"Could not load the model '{DEFAULT_CAPTION_MODEL}' (CAPTION_MODEL)" in result.stderr
    assert "did not answer" not in result.stderr
    asked = [path for path in hub.paths if DEFAULT_CAPTION_MODEL in path]
    assert len(asked) > 1, asked  # the check's one request, then the loader's
