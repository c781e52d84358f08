"""Faster stand-ins for `nn.Linear` on CPUs with native bfloat16, swapped in at load time.

Almost all of BLIP's and RoBERTa's time goes into linear layers. oneDNN reorders a bf16 weight
into its blocked layout at *every* call of a plain `nn.Linear`; `PackedLinear` does it once at
load time, the same product with the same numbers in about half the time (docs/performance.md).
A GELU that follows can be applied by the same call (`fuse_gelu`). Only where a layer narrows
its input and always sees hundreds of rows is the plain layout the faster
(`pack_linear_layers`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional
from transformers.activations import GELUActivation, GELUTanh, NewGELUActivation


def packing_available() -> bool:
    """oneDNN can prepack bf16 weights here (it needs a CPU that runs bf16 natively)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class PackedLinear(nn.Module):
    """`nn.Linear` in bf16 with its weight prepacked for oneDNN once, at load time."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # A plain attribute, not a parameter: an opaque oneDNN tensor that `.to()` must not touch.
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
        self.bias = linear.bias
        # A GELU applied by oneDNN to the product as it is written (`fuse_gelu`): "none" or
        # "tanh", GELU's two forms; "" for none.
        self.gelu = ""

    def post_op(self) -> tuple[str, str]:
        """oneDNN's attribute and algorithm for what is applied to the product: GELU or none."""
        return ("gelu", self.gelu) if self.gelu else ("none", "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attribute, algorithm = self.post_op()
        return torch.ops.mkldnn._linear_pointwise(
            x, self.packed_weight, self.bias, attribute, [], algorithm
        )

    def extra_repr(self) -> str:
        then = f", then GELU ({self.gelu})" if self.gelu else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bf16 prepacked{then}"
        )


Product = Callable[[torch.Tensor], torch.Tensor]


def product_of(layer: nn.Module) -> Product:
    """`layer`'s forward as a bare call, its weights bound once, for loops over many layers.

    Each module call and attribute lookup costs microseconds of Python here, and a reply's
    three texts make 48 linear products: on bare calls, RoBERTa's lean pass took 16.1
    against 16.8 ms on module calls, twice, side by side in bf16. Other layers keep their
    `forward`.
    """
    if isinstance(layer, PackedLinear):
        kernel = torch.ops.mkldnn._linear_pointwise.default
        weight, bias = layer.packed_weight, layer.bias
        attribute, algorithm = layer.post_op()
        return lambda x: kernel(x, weight, bias, attribute, [], algorithm)
    if type(layer) is nn.Linear:
        weight, bias = layer.weight, layer.bias
        return lambda x: functional.linear(x, weight, bias)
    return layer.forward


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of `weight` in int8 with one symmetric float32 scale (largest absolute / 127)."""
    rows = weight.float()
    scale = rows.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
    return torch.round(rows / scale[:, None]).to(torch.int8), scale


# Where transformers' models apply an activation right after a linear layer: BERT-style
# intermediate blocks (BERT, RoBERTa, BLIP's text decoder) and CLIP-style MLPs (BLIP's vision).
_LINEAR_THEN_ACTIVATION = (("dense", "intermediate_act_fn"), ("fc1", "activation_fn"))


def fuse_gelu(model: nn.Module) -> int:
    """Have each `PackedLinear` that a GELU follows apply it as it writes its product; how many.

    The separate GELU reads and writes the widest activations of the model once more: fused,
    eight photos' vision encoder took 0.72 against 0.79 s side by side. oneDNN applies it to
    the float32 sum before rounding to bf16, which is, if anything, closer to fp32.
    """
    fused = 0
    for module in model.modules():
        for linear_name, activation_name in _LINEAR_THEN_ACTIVATION:
            linear = getattr(module, linear_name, None)
            form = _gelu_form(getattr(module, activation_name, None))
            if isinstance(linear, PackedLinear) and not linear.gelu and form:
                linear.gelu = form
                setattr(module, activation_name, nn.Identity())
                fused += 1
    return fused


def _gelu_form(activation: object) -> str:
    """oneDNN's name for the form of GELU that `activation` computes; "" if it is none."""
    if isinstance(activation, nn.GELU):
        return activation.approximate
    if isinstance(activation, GELUActivation):
        return "none"
    if isinstance(activation, (GELUTanh, NewGELUActivation)):
        return "tanh"
    return ""


def pack_linear_layers(model: nn.Module, *, many_rows: Iterable[nn.Module] = ()) -> int:
    """Swap each plain `nn.Linear` under `model` for a `PackedLinear`; how many were swapped.

    Under `many_rows` (parts that see hundreds of rows at every call, like a photo's 577 patches
    in a vision encoder), layers that do not widen their input stay as they are: there, oneDNN's
    matrix product on the plain weight is the faster, reorder included. For the vision encoder's
    3072 → 768 layers it took 1.6 against 2.8 ms, and the encoder 99 against 116 ms a photo,
    side by side; its 768 → 3072 layers stay faster packed (1.3 against 1.8 ms).
    """
    plain = {
        id(layer)
        for part in many_rows
        for layer in part.modules()
        if isinstance(layer, nn.Linear) and layer.out_features <= layer.in_features
    }
    return replace_modules(
        model, lambda child: type(child) is nn.Linear and id(child) not in plain, PackedLinear
    )


def stack_linear_layers(layers: Sequence[nn.Linear]) -> nn.Linear:
    """One layer that computes the outputs of all `layers`, side by side, in one product.

    They must share their input size; the new layer has their dtype and device.
    """
    weight = torch.cat([layer.weight.detach() for layer in layers])
    stacked = nn.utils.skip_init(
        nn.Linear, weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype
    )
    # The concatenations become the parameters: no second copy while a model loads.
    stacked.weight = nn.Parameter(weight, requires_grad=False)
    stacked.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]), False)
    return stacked


def replace_linear_layers(module: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> int:
    """Swap every plain `nn.Linear` under `module` for `make(layer)`; how many were swapped.

    Each old layer is dropped as soon as it is replaced, so its weight can be freed at once.
    """
    return replace_modules(module, lambda child: type(child) is nn.Linear, make)


def replace_modules(
    module: nn.Module, matches: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]
) -> int:
    """Swap, in place, every submodule that `matches` for `make(submodule)`; how many."""
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if matches(child):
                setattr(parent, name, make(child))
                swapped += 1
    return swapped
