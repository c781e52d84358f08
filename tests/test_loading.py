"""A model that cannot be loaded stops everything with one line that says how to fix it."""

import shutil

import pytest

from core.captioner import Captioner
from core.cli import main
from core.errors import ModelLoadError
from core.sentiment import SentimentClassifier


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
