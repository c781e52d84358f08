"""`python -m core analyze`, run in-process (shared models) and once as a real subprocess."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from tests.child_env import child_env
from tests.pictures import picture, png_bomb


@pytest.fixture
def env(tiny_models, tmp_path, monkeypatch):
    """A fresh directory (no .env) and settings that point at the tiny models."""
    monkeypatch.chdir(tmp_path)
    for name in ("CAPTION_MODEL", "SENTIMENT_MODEL", "RECORDS_PATH", "MODEL_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAPTION_MODEL", str(tiny_models.caption))
    monkeypatch.setenv("SENTIMENT_MODEL", str(tiny_models.sentiment))
    monkeypatch.setenv("RECORDS_PATH", str(tmp_path / "out" / "records.csv"))
    return tmp_path


def rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_caption_mode_prints_the_result_and_records_it(env, capsys):
    assert main(["analyze", "--caption", "sunflowers in a field", "--text", "so happy"]) == 0
    out = capsys.readouterr().out
    assert "caption:       sunflowers in a field  [manual]" in out
    assert "combined:      sunflowers in a field. so happy" in out
    assert "label:" in out and "caption alone:" in out and "text alone:" in out
    (row,) = rows(env / "out" / "records.csv")
    assert row["combined_input"] == "sunflowers in a field. so happy"
    assert row["caption_source"] == "manual" and row["chat_id"] == ""
    assert row["label"] in out


def test_image_mode_with_json_output(env, capsys):
    image = env / "photo.png"
    image.write_bytes(picture((40, 40), (0, 120, 255)))
    assert main(["analyze", "--image", str(image), "--text", "what a day", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["caption_source"] == "image" and result["caption"]
    assert result["combined_input"] == f"{result['caption']}. what a day"
    assert result["label"] in result["scores"] and result["score"] == max(result["scores"].values())
    assert set(result["caption_alone"]) == {"label", "score", "scores"}
    assert result["recorded_to"] == str(env / "out" / "records.csv")
    (row,) = rows(env / "out" / "records.csv")
    assert (row["image_caption"], row["label"]) == (result["caption"], result["label"])


def test_no_record_leaves_the_records_file_alone(env, capsys):
    assert main(["analyze", "--caption", "a cat", "--text", "hi", "--no-record", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recorded_to"] is None
    assert not (env / "out" / "records.csv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "missing.jpg", "--text", "hi"], "error: Cannot read missing.jpg"),
        (["--caption", "a cat", "--text", "   "], "error: The text is empty"),
    ],
)
def test_bad_input_gives_one_clear_line_and_records_nothing(env, capsys, args, message):
    assert main(["analyze", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (env / "out" / "records.csv").exists()


def test_a_file_that_is_not_an_image_is_refused(env, capsys):
    fake = env / "notes.jpg"
    fake.write_bytes(b"%PDF-1.4 definitely not a photo")
    assert main(["analyze", "--image", str(fake), "--text", "hi"]) == 2
    assert capsys.readouterr().err == "error: That file is not an image I can read.\n"


def test_a_bad_setting_stops_with_one_line_naming_it(env, capsys, monkeypatch):
    monkeypatch.setenv("MODEL_PRECISION", "fp64")
    assert main(["analyze", "--caption", "a", "--text", "b"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: MODEL_PRECISION='fp64' is not accepted: use one of fp32, bf16, fp16, int8, auto.\n"
    )


def test_settings_come_from_a_dotenv_file_in_the_working_directory(env, capsys, monkeypatch):
    monkeypatch.delenv("RECORDS_PATH")
    (env / ".env").write_text("RECORDS_PATH=from-dotenv.csv\n")
    assert main(["analyze", "--caption", "a boat", "--text", "calm"]) == 0
    assert len(rows(env / "from-dotenv.csv")) == 1


def test_python_dash_m_core_runs_the_whole_pipeline(env):
    result = subprocess.run(
        [sys.executable, "-m", "core", "analyze", "--caption", "a dog", "--text", "yay", "--json"],
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["combined_input"] == "a dog. yay"


def test_a_bad_image_is_refused_before_the_models_load(env, capsys, monkeypatch):
    monkeypatch.setenv("CAPTION_MODEL", str(env / "no-such-model"))  # loading it would fail
    sliver = env / "sliver.png"
    sliver.write_bytes(png_bomb(1, 49_000_000))
    assert main(["analyze", "--image", str(sliver), "--text", "hi"]) == 2
    assert capsys.readouterr().err.startswith("error: The image is too long and thin")


@pytest.mark.parametrize("path", ["/dev/zero", "fifo", "."])
def test_only_a_regular_file_is_read_as_a_picture(env, capsys, path):
    if path == "fifo":
        os.mkfifo(env / "fifo")  # opened without waiting for a writer
    assert main(["analyze", "--image", path, "--text", "hi"]) == 2
    assert capsys.readouterr().err == f"error: Cannot read {path}: it is not a regular file.\n"


def test_a_file_over_the_size_limit_is_refused_having_read_no_more(env, capsys):
    big = env / "big.png"
    big.write_bytes(picture() + b"\0" * (20 * 1024 * 1024))
    assert main(["analyze", "--image", str(big), "--text", "hi"]) == 2
    assert capsys.readouterr().err == (
        f"error: Cannot read {big}: it is over 20 MB; send a smaller picture.\n"
    )


def test_a_text_that_is_not_valid_utf8_is_analysed_with_replacement_characters(env, capsys):
    """What Python makes of `--text $'\\xff'`: a lone surrogate, which no tokenizer takes."""
    assert main(["analyze", "--caption", "a \ud83d cat", "--text", "\udcff", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["caption"], result["text"]) == ("a \ufffd cat", "\ufffd")
    (row,) = rows(env / "out" / "records.csv")
    assert row["user_text"] == "\ufffd"


def test_a_shell_argument_that_is_not_utf8_gives_a_result(env):
    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"core", b"analyze", b"--caption", b"a cat",
         b"--text", b"\xff", b"--no-record"],
        capture_output=True, env=child_env(), check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert "text alone:" in result.stdout.decode()
