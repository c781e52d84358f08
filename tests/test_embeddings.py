import pytest
import torch
from torch import nn

from core.accel import embeddings
from core.accel.embeddings import Int8Embedding, quantize_word_embeddings


@pytest.fixture
def table() -> nn.Embedding:
    torch.manual_seed(0)
    table = nn.Embedding(300, 16, padding_idx=1)
    with torch.no_grad():
        table.weight[7] *= 100  # one row far larger than the others
        table.weight[9] = 0  # and one all zero
    return table


def test_each_row_is_looked_up_within_half_a_step_of_its_own_scale(table):
    ids = torch.tensor([[0, 7, 9, 299], [1, 1, 5, 7]])
    looked_up = Int8Embedding(table)(ids)
    expected = table(ids).detach()
    step = table.weight.detach().abs().amax(dim=1)[ids] / 127
    assert looked_up.shape == expected.shape
    assert ((looked_up - expected).abs() <= step.unsqueeze(-1) / 2 + 1e-6).all()
    assert looked_up[0, 2].eq(0).all()


def test_rows_are_stored_as_int8_and_the_output_follows_the_models_dtype(table):
    model = nn.Sequential(Int8Embedding(table)).to(torch.bfloat16)
    assert model[0].weight_int8.dtype == torch.int8
    assert model(torch.tensor([3])).dtype == torch.bfloat16
    assert model[0].padding_idx == 1


def test_a_table_quantized_in_chunks_equals_one_quantized_whole(monkeypatch, table):
    whole = Int8Embedding(table)
    monkeypatch.setattr(embeddings, "_CHUNK_ROWS", 64)
    chunked = Int8Embedding(table)
    assert torch.equal(whole.weight_int8, chunked.weight_int8)
    assert torch.equal(whole.scale, chunked.scale)


def test_only_vocabulary_tables_are_swapped(table):
    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = table
            self.position_embeddings = nn.Embedding(8, 16)

    model = nn.ModuleDict({"embeddings": Embeddings(), "other": nn.Embedding(4, 16)})
    assert quantize_word_embeddings(model) == 1
    assert isinstance(model["embeddings"].word_embeddings, Int8Embedding)
    assert type(model["embeddings"].position_embeddings) is nn.Embedding
    assert type(model["other"]) is nn.Embedding
