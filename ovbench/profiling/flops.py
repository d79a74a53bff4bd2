"""Count the FLOPs of one call, and name the arithmetic that was not counted.

``count_flops`` runs a callable once under ``torch.utils.flop_counter.FlopCounterMode``.
That counter has formulas only for matmul-, convolution- and attention-style operators
(``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``convolution``, the scaled-dot-product-attention
kernels, ...), with the convention that one multiply-add is 2 FLOPs; it ignores bias
additions. Every other operator adds **zero**: elementwise ops (add, mul, sigmoid, gelu,
relu), norms (native_layer_norm), softmax, reductions, interpolation
(upsample_bilinear2d), grid sampling (grid_sampler_2d), any custom operator, and even
attention kernels it has no formula for. ovbench adds two (``EXTRA_FORMULAS``): torch 2.14
counts the CUDA scaled-dot-product-attention kernels but not the CPU kernel
``aten._scaled_dot_product_flash_attention_for_cpu``, which gets the same formula, nor
``nn.MultiheadAttention``'s fused inference kernel ``aten._native_multi_head_attention``
(projections included), which gets its own. So a FLOP
total alone understates such models silently, and the list of operators the counter has
no formula for is always published next to it (``FlopCount.uncounted``).

To build that list, a recording ``TorchDispatchMode`` is entered *outside* the
FlopCounterMode, so that it sees exactly the operators FlopCounterMode executed, after
the counter's own decompositions (in the other order it would see, under
``torch.inference_mode``, composites such as ``aten.linear`` that the counter then
decomposes into the counted ``aten.addmm``). Operators that do no arithmetic (views,
copies, allocation, indexing, concatenation; see ``NON_ARITHMETIC_OPS``) are left out.

Operator names are those of the dispatched operators, which depend on the grad mode: under
``torch.inference_mode`` some composites reach the counter and are decomposed by it, e.g.
``F.interpolate(mode="bilinear")`` is then reported as ``aten.add``/``aten.mul``/
``aten.clamp``/... rather than ``aten.upsample_bilinear2d``; under ``torch.no_grad`` or
with grad enabled the names are the kernels'. The counted totals did not change with the grad
mode for Linear, Conv2d and MultiheadAttention (torch 2.14, CPU).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_flop_count

CONVENTION = ("FLOPs as counted by torch.utils.flop_counter.FlopCounterMode: one multiply-add = 2 FLOPs; "
              "only matmul, convolution and attention operators are counted (bias additions are not); "
              "operators in uncounted_ops ran, do arithmetic, and contributed 0")

# Base names (without namespace and overload) of aten/prim operators that do no arithmetic,
# hence are never reported as uncounted. Any operator whose schema marks its output as a view
# of an input (``OpOverload.is_view``) is left out as well, listed here or not.
# Decisions: ``masked_fill``, ``where`` and ``index_put`` only select or write values, so they
# count as indexing; tensor factories, including random ones (``randn``, ``bernoulli_``), are
# allocation. Comparisons, clamps, reductions, max/argmax, ``topk``, ``sort``, ``col2im``
# (sums overlaps) and ``scatter_reduce``/``scatter_add`` do compute and are reported.
NON_ARITHMETIC_OPS: frozenset[str] = frozenset({
    # views, reshapes and metadata
    "view", "_unsafe_view", "reshape", "_reshape_alias", "view_as", "permute", "transpose", "transpose_",
    "t", "t_", "expand", "expand_as", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "flatten",
    "unflatten", "slice", "select", "narrow", "diagonal", "unfold", "as_strided", "as_strided_", "alias",
    "detach", "detach_", "unbind", "view_as_real", "view_as_complex", "resolve_conj", "resolve_neg",
    "lift_fresh", "_local_scalar_dense", "size", "sym_size", "stride", "sym_stride", "storage_offset",
    "sym_storage_offset", "numel", "sym_numel", "dim", "is_contiguous", "sym_is_contiguous",
    "is_strides_like_format", "is_non_overlapping_and_dense", "is_same_size", "device", "layout",
    # copies and dtype/device conversion
    "clone", "copy", "copy_", "_to_copy", "to", "contiguous", "lift_fresh_copy", "set_", "resize_",
    # allocation and initialisation
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
    "new_zeros", "zero_", "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "fill_",
    "fill", "scalar_tensor", "arange", "linspace", "eye", "rand", "randn", "randint", "randperm",
    "rand_like", "randn_like", "randint_like", "normal", "normal_", "uniform_", "bernoulli",
    "bernoulli_", "random_",
    # concatenation, splitting and rearrangement
    "cat", "stack", "split", "split_with_sizes", "chunk", "flip", "roll", "repeat", "tile",
    "constant_pad_nd", "pixel_shuffle", "pixel_unshuffle", "im2col",
    # indexing, gathering and masked selection
    "index", "_unsafe_index", "index_select", "index_put", "index_put_", "_index_put_impl_",
    "index_copy", "index_copy_", "index_fill", "index_fill_", "gather", "scatter", "scatter_",
    "embedding", "masked_fill", "masked_fill_", "masked_select", "where", "nonzero",
})



def cpu_flash_attention_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                             out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of the CPU attention kernel: torch's own count for the CUDA flash kernel
    (``QKᵀ`` and ``AV``, 2 FLOPs per multiply-add)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def native_multi_head_attention_flop(query_shape: Any, key_shape: Any, value_shape: Any, embed_dim: int,
                                     *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of ``aten._native_multi_head_attention`` (``nn.MultiheadAttention``'s fused inference
    path, batch-first ``(B, L, E)`` query and ``(B, S, E)`` key/value): the q, k, v and output
    projections (``2·B·L·E²`` each for q and out, ``2·B·S·E²`` each for k and v) and the two attention
    products ``QKᵀ`` and ``AV`` (``2·B·L·S·E`` each); biases and the softmax are not counted, as elsewhere."""
    b, length, e = query_shape
    source = key_shape[1]
    return 2 * b * e * e * (2 * length + 2 * source) + 2 * 2 * b * length * source * e


#: Formulas FlopCounterMode lacks: the CPU attention kernel counts like the CUDA flash kernel, and
#: ``nn.MultiheadAttention``'s fused inference kernel (used by open_clip's ViTs under no_grad) as above.
EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash_attention_flop,
                  torch.ops.aten._native_multi_head_attention: native_multi_head_attention_flop}

_NAME_EXCLUDED_NAMESPACES = frozenset({"aten", "prim"})  # custom namespaces are never excluded by name


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call, as counted by FlopCounterMode, plus what it could not count.

    ``total`` and ``by_operator`` are in FLOPs (one multiply-add = 2 FLOPs); ``uncounted``
    maps each operator that ran, does arithmetic and has no FLOP formula to its number of calls.
    Operator names read like ``"aten.convolution"`` (namespace.name, no overload).
    """

    total: int
    by_operator: dict[str, int]
    uncounted: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form; ``gflops`` is ``total / 1e9``."""
        return {"total": self.total, "gflops": self.total / 1e9, "by_operator": dict(self.by_operator),
                "uncounted_ops": dict(self.uncounted), "convention": CONVENTION}


def _op_name(func: torch._ops.OpOverload) -> str:
    """``"aten.mm"`` for ``aten.mm.default``: the overload packet's name."""
    return str(func.overloadpacket)


def _does_uncounted_arithmetic(func: torch._ops.OpOverload) -> bool:
    """True if ``func`` has no FLOP formula and is not a view or a ``NON_ARITHMETIC_OPS`` entry."""
    if func.overloadpacket in flop_registry or func.overloadpacket in EXTRA_FORMULAS or func.is_view:
        return False
    namespace, _, base = _op_name(func).partition(".")
    return not (namespace in _NAME_EXCLUDED_NAMESPACES and base in NON_ARITHMETIC_OPS)


class _UncountedOpRecorder(TorchDispatchMode):
    """Counts the calls of every dispatched operator that does arithmetic without a FLOP formula."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if isinstance(func, torch._ops.OpOverload) and _does_uncounted_arithmetic(func):
            self.calls[_op_name(func)] += 1
        return func(*args, **(kwargs or {}))


def count_flops(fn: Callable[[], object]) -> FlopCount:
    """Run ``fn()`` once under ``FlopCounterMode(display=False)`` and a recording dispatch mode.

    Returns the counted FLOPs (total and per operator, only operators with > 0) and the
    operators that did arithmetic FlopCounterMode has no formula for, with their call counts.
    Grad mode is the caller's: wrap ``fn`` in ``torch.no_grad()`` etc. as wanted. ``fn``'s
    result is discarded.
    """
    recorder = _UncountedOpRecorder()
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with recorder, counter:  # recorder outermost: it sees the ops after the counter's decompositions
        fn()
    per_op = counter.get_flop_counts().get("Global", {})
    by_operator = {str(op): int(n) for op, n in sorted(per_op.items(), key=lambda kv: str(kv[0])) if n > 0}
    return FlopCount(total=int(counter.get_total_flops()), by_operator=by_operator,
                     uncounted=dict(sorted(recorder.calls.items())))
