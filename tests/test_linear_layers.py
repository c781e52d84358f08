import pytest
import torch
from torch import nn
from transformers.activations import GELUActivation, GELUTanh

from core.accel.int8 import BlockInt8Linear, OnnxLinear, RowInt8Linear, stack_int8
from core.accel.linear_layers import (
    PackedLinear,
    fuse_gelu,
    packing_available,
    replace_linear_layers,
    stack_linear_layers,
)


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.float() - reference.float()).norm() / reference.float().norm())


@pytest.fixture
def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(96, 40)


INT8_LAYERS = [BlockInt8Linear, RowInt8Linear]


@pytest.mark.parametrize("kind", INT8_LAYERS)
@pytest.mark.parametrize("rows", [1, 3, 16, 17, 200])
@pytest.mark.parametrize("in_features", [96, 40, 37])
def test_int8_layers_stay_near_the_float_layer_and_match_onnx_runtime(kind, rows, in_features):
    torch.manual_seed(rows)
    layer = nn.Linear(in_features, 24)
    int8 = kind.from_linear(layer)
    inputs = torch.randn(2, rows, in_features)
    with torch.inference_mode():
        out, reference, fast = int8(inputs), layer(inputs), OnnxLinear(int8, threads=1)(inputs)
    assert out.shape == (2, rows, 24)
    assert relative_error(out, reference) < 0.03
    assert (fast - out).abs().max() < 1e-4  # the same numbers, summed in another order


def test_int8_weights_are_stored_as_int8_blocks_with_one_scale_each(linear):
    int8 = BlockInt8Linear.from_linear(linear)
    assert int8.blocks.dtype == torch.int8 and int8.blocks.shape == (40, 2, 64)
    assert int8.scales.shape == (40, 2)
    assert not any(p is linear.weight for p in int8.parameters())


def test_rows_int8_weights_keep_seven_bits_and_one_scale_per_output(linear):
    int8 = RowInt8Linear.from_linear(linear)
    assert int8.levels.dtype == torch.int8 and int8.levels.shape == (40, 96)
    assert int8.levels.abs().max() == 63 and int8.scales.shape == (40,)


@pytest.mark.parametrize("kind", INT8_LAYERS)
def test_an_all_zero_output_row_or_input_row_does_not_divide_by_zero(kind, linear):
    with torch.no_grad():
        linear.weight[3] = 0
    inputs = torch.randn(2, 96)
    inputs[1] = 0
    int8 = kind.from_linear(linear)
    for out in (int8(inputs), OnnxLinear(int8, threads=1)(inputs)):
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", INT8_LAYERS)
def test_a_rows_int8_result_does_not_depend_on_the_other_rows(kind, linear):
    int8 = kind.from_linear(linear)
    fast = OnnxLinear(int8, threads=1)
    inputs = torch.randn(6, 96)
    inputs[4] *= 1000  # one loud row in the batch
    with torch.inference_mode():
        for layer in (int8, fast):
            assert (layer(inputs)[0] - layer(inputs[:1])[0]).abs().max() < 1e-5


@pytest.mark.skipif(not packing_available(), reason="this CPU has no native bf16 for oneDNN")
@pytest.mark.parametrize("shape", [(1, 96), (3, 7, 96), (577, 96)])
def test_a_prepacked_layer_computes_what_the_plain_bf16_layer_computes(linear, shape):
    linear.bfloat16()
    packed = PackedLinear(linear)
    inputs = torch.randn(*shape, dtype=torch.bfloat16)
    with torch.inference_mode():
        out, reference = packed(inputs), linear(inputs)
    assert out.shape == (*shape[:-1], 40)
    assert relative_error(out, reference) < 0.01


def test_every_linear_layer_is_replaced_in_place_and_others_are_left():
    model = nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.Sequential(nn.Linear(32, 8)))
    assert replace_linear_layers(model, BlockInt8Linear.from_linear) == 2
    assert isinstance(model[0], BlockInt8Linear) and isinstance(model[2][0], BlockInt8Linear)
    assert isinstance(model[1], nn.GELU)
    assert replace_linear_layers(model, BlockInt8Linear.from_linear) == 0


class Mlp(nn.Module):
    """The shape of BLIP's vision MLP: fc1, then its activation, then fc2."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.fc1, self.activation_fn, self.fc2 = nn.Linear(96, 256), activation, nn.Linear(256, 96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(x)))


@pytest.mark.skipif(not packing_available(), reason="this CPU has no native bf16 for oneDNN")
@pytest.mark.parametrize(
    "activation", [GELUActivation(), nn.GELU(), GELUTanh(), nn.GELU(approximate="tanh")]
)
def test_a_gelu_after_a_packed_layer_is_applied_by_the_layer_with_the_same_result(activation):
    torch.manual_seed(0)
    mlp = Mlp(activation).bfloat16()
    inputs = torch.randn(3, 577, 96, dtype=torch.bfloat16)
    with torch.inference_mode():
        reference = mlp(inputs).float()
        replace_linear_layers(mlp, PackedLinear)
        assert fuse_gelu(mlp) == 1
        out = mlp(inputs)
    assert isinstance(mlp.activation_fn, nn.Identity) and mlp.fc1.gelu
    assert relative_error(out, reference) < 0.01
    assert fuse_gelu(mlp) == 0  # once only


@pytest.mark.skipif(not packing_available(), reason="this CPU has no native bf16 for oneDNN")
def test_other_activations_and_unpacked_layers_keep_their_own_activation():
    relu, plain = Mlp(nn.ReLU()).bfloat16(), Mlp(GELUActivation())
    replace_linear_layers(relu, PackedLinear)
    assert fuse_gelu(relu) == 0 and fuse_gelu(plain) == 0
    assert isinstance(relu.activation_fn, nn.ReLU) and isinstance(
        plain.activation_fn, GELUActivation
    )


def test_stacked_layers_give_each_layers_output_side_by_side():
    torch.manual_seed(0)
    layers = [nn.Linear(32, 16), nn.Linear(32, 8), nn.Linear(32, 16)]
    stacked = stack_linear_layers(layers)
    inputs = torch.randn(5, 32)
    with torch.inference_mode():
        expected = torch.cat([layer(inputs) for layer in layers], dim=-1)
        torch.testing.assert_close(stacked(inputs), expected)
    assert (stacked.in_features, stacked.out_features) == (32, 40)


@pytest.mark.parametrize("kind", INT8_LAYERS)
def test_stacked_int8_layers_give_each_layers_outputs_times_its_factor(kind):
    torch.manual_seed(1)
    layers = [kind.from_linear(nn.Linear(70, width)) for width in (8, 24, 16)]
    factors = [0.5, 1.0, 3.0]
    stacked = stack_int8(layers, factors)
    inputs = torch.randn(5, 70)
    with torch.inference_mode():
        expected = [layer(inputs) * f for layer, f in zip(layers, factors, strict=True)]
        expected = torch.cat(expected, dim=-1)
        assert type(stacked) is kind and stacked.out_features == 48
        assert (stacked(inputs) - expected).abs().max() < 1e-5
