import logging
import shutil

import pytest
import torch

from core.accel.sentiment_compiled import PREFIX
from core.precision import AMX_BF16, BF16, cpu_flags
from core.sentiment import SentimentClassifier

# The tiny model's texts, packed into one sequence and into two.
TEXTS = ["a dog on the beach. best day ever!!", "a dog on the beach", "best day ever!!"]
LONG = ["sunflowers in a field. life is hard and nothing works this week at all", "ok"] * 2

pytestmark = pytest.mark.skipif(AMX_BF16 not in cpu_flags(), reason="needs a CPU with AMX")


def packages(folder) -> list:
    return sorted(folder.glob(f"{PREFIX}*.pt2"))


@pytest.fixture(scope="module")
def eager(tiny_models) -> SentimentClassifier:
    return SentimentClassifier.from_pretrained(str(tiny_models.sentiment), precision=BF16)


@pytest.fixture(scope="module")
def compiled(tiny_models, compile_dir) -> SentimentClassifier:
    """Compiled into the session's folder, where the bot tests find it."""
    return SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=BF16, compile_dir=compile_dir
    )


@pytest.mark.parametrize("texts", [TEXTS, LONG, TEXTS[2:]])
def test_compiled_layers_give_the_eager_bf16_results(eager, compiled, compile_dir, texts):
    assert len(packages(compile_dir)) == 1
    assert not list(compiled.model.roberta.encoder.layer)  # no second copy of the weights
    got, expected = compiled(texts), eager(texts)
    assert [s.label for s in got] == [s.label for s in expected]
    # Both bf16, summed in other orders: 0.003 was the largest difference seen.
    assert [s.score for s in got] == pytest.approx([s.score for s in expected], abs=0.01)


def test_a_texts_result_does_not_depend_on_the_texts_it_is_batched_with(compiled):
    together = compiled.forward(compiled.preprocess(LONG[:2] + TEXTS))
    alone = torch.cat([compiled.forward(compiled.preprocess([t])) for t in LONG[:2] + TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_a_restart_loads_the_package_without_compiling(tiny_models, compiled, compile_dir, caplog):
    (package,) = packages(compile_dir)
    written = package.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="core.accel.sentiment_compiled"):
        again = SentimentClassifier.from_pretrained(
            str(tiny_models.sentiment), precision=BF16, compile_dir=compile_dir
        )
    assert "compiled layers loaded" in caplog.text
    assert "Compiling" not in caplog.text
    assert packages(compile_dir) == [package] and package.stat().st_mtime_ns == written
    assert [s.score for s in again(TEXTS)] == [s.score for s in compiled(TEXTS)]


def test_a_damaged_package_is_dropped_and_the_layers_run_uncompiled(
    tiny_models, compiled, compile_dir, eager, tmp_path, caplog
):
    (package,) = packages(compile_dir)
    damaged = tmp_path / package.name
    damaged.write_bytes(package.read_bytes()[:4096])
    with caplog.at_level(logging.WARNING, logger="core.accel.sentiment_compiled"):
        classifier = SentimentClassifier.from_pretrained(
            str(tiny_models.sentiment), precision=BF16, compile_dir=tmp_path
        )
    assert "run uncompiled" in caplog.text
    assert not damaged.exists()  # compiled afresh at the next start
    assert list(classifier.model.roberta.encoder.layer)
    assert [s.score for s in classifier(TEXTS)] == [s.score for s in eager(TEXTS)]


def test_without_a_cpp_compiler_the_layers_run_uncompiled_and_nothing_is_kept(
    tiny_models, eager, tmp_path, monkeypatch, caplog
):
    """The compiler runs in a child process, which inherits `CXX`, with a fresh cache of
    inductor's, so no earlier compile stands in for the missing compiler."""
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    folder = tmp_path / "compiled"
    with caplog.at_level(logging.WARNING, logger="core.accel.sentiment_compiled"):
        classifier = SentimentClassifier.from_pretrained(
            str(tiny_models.sentiment), precision=BF16, compile_dir=folder
        )
    assert "run uncompiled" in caplog.text and "the compiler's process failed" in caplog.text
    assert not classifier.compiled and not packages(folder)
    assert [s.score for s in classifier(TEXTS)] == [s.score for s in eager(TEXTS)]


def test_a_folder_that_cannot_be_written_leaves_the_layers_uncompiled(
    tiny_models, eager, tmp_path, caplog
):
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="core.accel.sentiment_compiled"):
        classifier = SentimentClassifier.from_pretrained(
            str(tiny_models.sentiment), precision=BF16, compile_dir=blocked / "compiled"
        )
    assert "run uncompiled" in caplog.text
    assert [s.score for s in classifier(TEXTS)] == [s.score for s in eager(TEXTS)]


def test_other_modes_are_never_compiled(tiny_models, tmp_path):
    for mode in ("fp32", "int8"):
        SentimentClassifier.from_pretrained(
            str(tiny_models.sentiment), precision=mode, compile_dir=tmp_path
        )
    assert not list(tmp_path.iterdir())


def test_an_older_package_is_removed_once_the_current_one_is_loaded(
    tiny_models, compile_dir, tmp_path
):
    folder = tmp_path / "compiled"
    shutil.copytree(compile_dir, folder)
    stale = folder / f"{PREFIX}0123456789abcdef.pt2"
    stale.write_bytes(b"compiled from other weights")
    SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=BF16, compile_dir=folder
    )
    assert [p.name for p in packages(folder)] == [p.name for p in packages(compile_dir)]
    assert not stale.exists()
