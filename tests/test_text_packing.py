import torch

from core.accel.text_packing import ROW_MULTIPLE, SEQUENCE_TOKENS, pack_texts

PAD = 1  # RoBERTa's padding index


def padded(*lengths: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch whose text i has tokens 100 * (i + 1) + 0, 1, 2, ..."""
    ids = torch.full((len(lengths), max(lengths)), PAD)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = 100 * (row + 1) + torch.arange(length)
        mask[row, :length] = 1
    return ids, mask


def tokens_of(packed, text: int) -> list[int]:
    return packed.input_ids[packed.texts == text].tolist()


def test_a_replys_three_texts_share_one_sequence_rounded_to_whole_blocks_of_rows():
    packed = pack_texts(*padded(20, 11, 10), PAD)
    assert packed.input_ids.shape == (1, 48)
    assert 48 % ROW_MULTIPLE == 0
    for text, length in enumerate((20, 11, 10)):
        assert tokens_of(packed, text) == (100 * (text + 1) + torch.arange(length)).tolist()
        assert packed.position_ids[packed.texts == text].tolist() == list(
            range(PAD + 1, PAD + 1 + length)
        )
    assert (packed.texts == -1).sum() == 7
    assert packed.input_ids[packed.texts == -1].eq(PAD).all()


def test_each_texts_first_token_is_found_in_input_order():
    packed = pack_texts(*padded(5, 30, 12), PAD)
    states = packed.input_ids[..., None]  # a token's "state" is its id
    assert packed.firsts(states)[:, 0].tolist() == [100, 200, 300]


def test_a_token_sees_the_tokens_of_its_own_text_only():
    packed = pack_texts(*padded(3, 2), PAD)
    seen = packed.attention_mask()[0, 0]
    texts = packed.texts[0]
    for query in range(texts.numel()):
        assert seen[query].tolist() == (texts == texts[query]).tolist()
    assert seen.any(dim=1).all()  # padding sees padding: no empty row


def test_the_attention_bias_adds_nothing_where_a_token_sees_and_minus_infinity_elsewhere():
    packed = pack_texts(*padded(3, 2, 70), PAD)
    bias = packed.attention_bias(torch.bfloat16)
    seen = packed.attention_mask()
    assert bias.dtype == torch.bfloat16 and bias.shape == seen.shape
    assert bias[seen].eq(0).all()
    assert bias[~seen].eq(float("-inf")).all()


def test_texts_that_do_not_fit_together_go_to_further_sequences():
    lengths = (SEQUENCE_TOKENS - 4, 10, 3, SEQUENCE_TOKENS - 20)
    packed = pack_texts(*padded(*lengths), PAD)
    assert packed.input_ids.shape[0] == 2
    for text, length in enumerate(lengths):
        assert len(tokens_of(packed, text)) == length
        assert packed.texts[packed.first_sequence[text]].eq(text).sum() == length


def test_a_text_longer_than_a_sequence_gets_one_of_its_own_length():
    packed = pack_texts(*padded(200, 7, 9), PAD)
    assert packed.input_ids.shape == (2, 208)  # 200 rounded to whole tiles
    assert packed.first_sequence.tolist()[0] != packed.first_sequence.tolist()[1]
    assert packed.first_sequence.tolist()[1] == packed.first_sequence.tolist()[2]


def test_left_padding_is_packed_the_same():
    ids, mask = padded(4, 2)
    left_ids, left_mask = ids.clone(), mask.clone()
    left_ids[1], left_mask[1] = ids[1].roll(2), mask[1].roll(2)
    right, left = pack_texts(ids, mask, PAD), pack_texts(left_ids, left_mask, PAD)
    assert torch.equal(right.input_ids, left.input_ids)
    assert torch.equal(right.position_ids, left.position_ids)
