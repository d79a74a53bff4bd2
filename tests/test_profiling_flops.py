"""count_flops: hand-computed FLOP totals and the list of uncounted operators."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ovbench.profiling.flops import EXTRA_FORMULAS, NON_ARITHMETIC_OPS, count_flops


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_linear_counts_matmul_only_not_bias() -> None:
    layer, x = nn.Linear(8, 4), torch.randn(3, 8)
    flops = count_flops(lambda: layer(x))
    assert flops.total == 2 * 3 * 8 * 4 == 192  # addmm formula: 2*m*n*k, the bias add is not counted
    assert flops.by_operator == {"aten.addmm": 192}
    assert flops.uncounted == {}  # the weight transpose is a view


def test_conv2d_formula() -> None:
    conv, x = nn.Conv2d(3, 5, kernel_size=3, padding=1), torch.randn(2, 3, 6, 6)
    flops = count_flops(lambda: conv(x))
    n, c_out, h, w, c_in, k = 2, 5, 6, 6, 3, 3
    assert flops.total == 2 * n * c_out * h * w * c_in * k * k == 19440
    assert flops.by_operator == {"aten.convolution": 19440}
    assert flops.uncounted == {}


def test_uncounted_lists_softmax_and_sigmoid_with_calls_but_not_views() -> None:
    a, b = torch.randn(4, 6), torch.randn(6, 5)

    def fn() -> tuple[torch.Tensor, torch.Tensor]:
        m = a @ b
        return m.softmax(-1).t().t().view(20).view(4, 5), torch.sigmoid(torch.sigmoid(m.permute(1, 0)))

    flops = count_flops(fn)
    assert flops.total == 2 * 4 * 6 * 5
    assert flops.by_operator == {"aten.mm": 240}
    assert flops.uncounted == {"aten._softmax": 1, "aten.sigmoid": 2}


def test_interpolate_and_grid_sample_are_uncounted() -> None:
    img, grid = torch.randn(1, 2, 5, 5), torch.rand(1, 3, 3, 2) * 2 - 1
    flops = count_flops(lambda: F.grid_sample(F.interpolate(img, size=(10, 10), mode="bilinear"), grid,
                                              align_corners=False))
    assert flops.total == 0 and flops.by_operator == {}
    assert flops.uncounted == {"aten.upsample_bilinear2d": 1, "aten.grid_sampler_2d": 1}


def test_inference_mode_still_flags_decomposed_arithmetic_and_counts_linear() -> None:
    # Under inference_mode, aten.linear reaches the counter, which decomposes it into the counted
    # addmm, and upsample_bilinear2d is decomposed into elementwise ops: those must be reported.
    layer, x, img = nn.Linear(8, 4), torch.randn(3, 8), torch.randn(1, 2, 5, 5)
    with torch.inference_mode():
        flops = count_flops(lambda: (layer(x), F.interpolate(img, size=(10, 10), mode="bilinear")))
    assert flops.by_operator == {"aten.addmm": 192}
    assert "aten.linear" not in flops.uncounted and "aten.addmm" not in flops.uncounted
    assert {"aten.mul", "aten.add"} <= flops.uncounted.keys()
    assert not {name.split(".", 1)[1] for name in flops.uncounted} & NON_ARITHMETIC_OPS


def test_recorder_leaves_totals_unchanged_and_sums_match() -> None:
    attn = nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(2, 5, 16)

    def fn() -> object:
        return attn(x, x, x, need_weights=False)

    bare = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with bare:
        fn()
    flops = count_flops(fn)
    assert flops.total == bare.get_total_flops() > 0
    assert sum(flops.by_operator.values()) == flops.total
    assert all(n > 0 for n in flops.by_operator.values())


def test_custom_op_without_formula_is_reported() -> None:
    lib = torch.library.Library("ovbench_flops_test", "FRAGMENT")
    lib.define("double(Tensor x) -> Tensor")
    lib.impl("double", lambda x: x * 2, "CompositeExplicitAutograd")
    flops = count_flops(lambda: torch.ops.ovbench_flops_test.double(torch.ones(3)))
    assert flops.uncounted["ovbench_flops_test.double"] == 1


def test_to_json_is_plain_json() -> None:
    layer, x = nn.Linear(8, 4), torch.randn(3, 8)
    flops = count_flops(lambda: torch.relu(layer(x)))
    out = json.loads(json.dumps(flops.to_json()))
    assert out["total"] == 192 and out["gflops"] == 192 / 1e9
    assert out["by_operator"] == {"aten.addmm": 192}
    assert out["uncounted_ops"] == {"aten.relu": 1}
    assert "2 FLOPs" in out["convention"]


def test_fused_and_unfused_multi_head_attention_count_the_same_flops():
    """nn.MultiheadAttention's fused inference kernel (no_grad, eval) and its unfused path (grad:
    addmm projections + the CPU attention kernel) both count 2·B·E²·(2L + 2S) + 4·B·L·S·E."""
    torch.manual_seed(0)
    m = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(1, 10, 16)
    expected = 2 * 16 * 16 * (2 * 10 + 2 * 10) + 4 * 10 * 10 * 16
    with torch.no_grad():
        fused = count_flops(lambda: m(x, x, x, need_weights=False))
    unfused = count_flops(lambda: m(x, x, x, need_weights=False))
    assert fused.total == unfused.total == expected
    assert fused.by_operator == {"aten._native_multi_head_attention": expected}
    assert unfused.by_operator["aten._scaled_dot_product_flash_attention_for_cpu"] == 4 * 10 * 10 * 16
    assert fused.uncounted == {} and unfused.uncounted == {}
