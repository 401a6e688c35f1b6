"""Linear layers on oneDNN's prepacked CPU kernel, with the bias and GELU inside the matmul.

On a CPU, eager PyTorch runs each linear layer of a BERT encoder as an MKL
GEMM after copying the bias into the output, and the feed-forward GELU as a
separate pass over the activations. Inductor's freezing replaces both with
one oneDNN call on weights reordered once for the CPU, but compiling takes
longer than it saves on a single evaluation (docs/BENCHMARKS.md).
PyTorch's ``torch.utils.mkldnn.MkldnnLinear`` converts every input to
oneDNN's layout and back and applies no GELU, and transformers and
sentence-transformers have no such module. So this one calls the operator
that freezing emits, ``torch.ops.mkldnn._linear_pointwise``. With all-MiniLM-L6-v2 a SciFact run
encodes 7% faster than with ``nn.Linear``, with embeddings within 2e-7.

The operator is private to PyTorch. So before swapping any layer,
:func:`pack_linear_layers` checks that the operator exists and that a packed
layer gives the output of ``nn.Linear`` on random weights. If not, the model
keeps its own layers.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

# The model's own layers, and the prepacked oneDNN layers of this module.
TORCH_KERNEL = "torch"
ONEDNN_KERNEL = "onednn-packed"

# A packed layer must reproduce nn.Linear this closely on random weights and input.
SELF_CHECK_TOLERANCE = 1e-4

# transformers' model types whose base model keeps every linear layer of its
# layers inside ``model.encoder``, each checked by tests/test_cpu_linear.py.
# The encoder plans packed layers only for these, so that a fully cached run
# finds its cache folder without loading the weights.
PACKABLE_MODEL_TYPES = frozenset({"bert", "camembert", "electra", "mpnet", "roberta", "xlm-roberta"})


def onednn_linear_available() -> bool:
    """Return whether this torch build has oneDNN and its prepacked linear operators."""
    operators = torch.ops.mkldnn
    return torch.backends.mkldnn.is_available() and hasattr(operators, "_linear_pointwise") and hasattr(operators, "_reorder_linear_weight")


class PackedLinear(nn.Module):
    """A float32 linear layer on oneDNN's prepacked weights, optionally followed by an exact GELU in the same call."""

    def __init__(self, linear: nn.Linear, *, gelu: bool = False) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.gelu = gelu
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, self.in_features)
        # For the GELU post-op, algorithm "none" selects erf's exact form. Other post-ops take "".
        post_op, algorithm = ("gelu", "none") if self.gelu else ("none", "")
        output = torch.ops.mkldnn._linear_pointwise(rows, self.packed_weight, self.bias, post_op, [], algorithm)
        return output.reshape(*hidden.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, gelu={self.gelu}"


def pack_linear_layers(model: nn.Module) -> Optional[str]:
    """Swap every linear layer of a float32 model's ``encoder`` for a :class:`PackedLinear`.

    A feed-forward block with an exact GELU (transformers' ``intermediate``
    modules with ``hidden_act: gelu``) gets the GELU fused into its linear
    layer. The model is changed in place.

    Returns:
        None once the layers are swapped, or why they were left as they are.
    """
    if not onednn_linear_available():
        return "this torch build has no oneDNN prepacked linear operator"
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        return f"{type(model).__name__} has no `encoder` module"
    if any(parameter.dtype != torch.float32 or parameter.device.type != "cpu" for parameter in model.parameters()):
        return "the weights are not float32 on the CPU"

    linears = [(name, module) for name, module in encoder.named_modules() if type(module) is nn.Linear]
    if not linears:
        return f"{type(model).__name__}.encoder has no linear layers"
    problem = _self_check(linears[0][1].in_features, linears[0][1].out_features)
    if problem is not None:
        return problem

    gelu_owners = {name for name, module in encoder.named_modules() if _fusable_gelu_owner(module)}
    for name, linear in linears:
        owner_name, _, attribute = name.rpartition(".")
        owner = encoder.get_submodule(owner_name) if owner_name else encoder
        fuse = owner_name in gelu_owners and attribute == "dense"
        setattr(owner, attribute, PackedLinear(linear, gelu=fuse))
        if fuse:
            owner.intermediate_act_fn = nn.Identity()
    logger.debug("Packed %d linear layers for oneDNN (%d with GELU fused)", len(linears), len(gelu_owners))
    return None


def _fusable_gelu_owner(module: nn.Module) -> bool:
    """Return whether ``module`` is a feed-forward block whose ``dense`` layer is followed by erf's GELU."""
    from transformers.activations import GELUActivation

    activation = getattr(module, "intermediate_act_fn", None)
    return (
        type(getattr(module, "dense", None)) is nn.Linear
        and isinstance(activation, GELUActivation)
        and activation.act is nn.functional.gelu
    )


def _self_check(in_features: int, out_features: int) -> Optional[str]:
    """Compare a packed layer of this shape, with and without GELU, with ``nn.Linear`` and describe any mismatch.

    The weights are random rather than the checkpoint's, so a broken
    checkpoint (NaN weights) is not mistaken for a broken operator.
    """
    generator = torch.Generator().manual_seed(0)
    linear = nn.utils.skip_init(nn.Linear, in_features, out_features)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(out_features, in_features, generator=generator) * in_features**-0.5)
        linear.bias.copy_(torch.randn(out_features, generator=generator))
    sample = torch.randn(5, 3, in_features, generator=generator)
    with torch.inference_mode():
        try:
            outputs = {
                "linear": (PackedLinear(linear)(sample), linear(sample)),
                "linear + GELU": (PackedLinear(linear, gelu=True)(sample), nn.functional.gelu(linear(sample))),
            }
        except RuntimeError as error:
            return f"oneDNN's prepacked linear operator failed: {error}"
    for label, (packed, reference) in outputs.items():
        if not torch.allclose(packed, reference, rtol=SELF_CHECK_TOLERANCE, atol=SELF_CHECK_TOLERANCE):
            difference = (packed - reference).abs().max().item()
            return f"oneDNN's prepacked {label} differs from PyTorch's by {difference:.2e}"
    return None
