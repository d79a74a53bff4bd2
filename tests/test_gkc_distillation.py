"""GKC's TGKD building blocks (methods/gkc/distillation.py): loss arithmetic, teacher crops,
region subsampling, the student head."""
from __future__ import annotations

import pytest
import torch

from methods.gkc.distillation import MAX_LIST_LEN, TGKDHead, region_crops, subsample, tgkd_loss
from ovbench.models.clip import CLIP_MEAN, CLIP_STD


# ---------------------------------------------------------------------------------------------- loss

def _example():
    """3 regions: 0 and 1 in image 0, 2 in image 1; unit vectors in R², passed scaled (raw)."""
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    image_index = torch.tensor([0, 0, 1])
    return 3.0 * s, 0.5 * c, 7.0 * t, image_index


def test_tgkd_loss_hand_computed():
    s, c, t, image_index = _example()
    alpha = torch.tensor(0.5)  # α² = 0.25
    # plain ||s_i - c_i||²: region 0: 0; region 1: |(-1, 1)|² = 2; region 2: |(1, -1)|² = 2  -> sum 4
    # relational (α²<t_i,t_j> - <s_i,c_j>)², image 0 (i, j in {0, 1}):
    #   (0,0): (0.25*1 - 1)² = 0.5625   (0,1): (0.25*0 - 1)² = 1
    #   (1,0): (0.25*0 - 0)² = 0        (1,1): (0.25*1 - 0)² = 0.0625          -> sum 1.625
    # image 1: (2,2): (0.25*1 - 0)² = 0.0625
    # one mean over 3 + 2² + 1² = 8 terms: (4 + 1.625 + 0.0625) / 8 = 5.6875 / 8
    loss = tgkd_loss(s, c, t, image_index, alpha)
    assert loss.item() == pytest.approx(5.6875 / 8)
    # not two separately averaged terms: 4/3 + 1.6875/5
    assert loss.item() != pytest.approx(4 / 3 + 1.6875 / 5)
    assert loss.item() != pytest.approx((4 / 3 + 1.6875 / 5) / 2)


def test_tgkd_loss_excludes_cross_image_pairs():
    s, c, t, _ = _example()
    alpha = torch.tensor(0.5)
    # all in one image adds (0,2): (0.25*1 - 0)² = 0.0625, (2,0): (0.25*1 - 1)² = 0.5625,
    # (1,2): (0 - 1)² = 1, (2,1): (0 - 1)² = 1  -> (5.6875 + 2.625) / 12
    one_image = tgkd_loss(s, c, t, torch.zeros(3, dtype=torch.long), alpha)
    assert one_image.item() == pytest.approx((5.6875 + 2.625) / 12)
    # changing the other image's region's text does not touch image 0's pairs: only (2,2) counts there
    t2 = t.clone()
    t2[2] = torch.tensor([0.0, -4.0])
    split = tgkd_loss(s, c, t2, torch.tensor([0, 0, 1]), alpha)
    assert split.item() == pytest.approx(5.6875 / 8)


def test_tgkd_loss_perfect_student_is_zero():
    gen = torch.Generator().manual_seed(0)
    c = torch.nn.functional.normalize(torch.randn(5, 16, generator=gen), dim=-1)
    image_index = torch.tensor([0, 0, 0, 1, 2])
    # s = c and α²<t_i,t_j> = <c_i,c_j> for every same-image pair: t = c in image 0 (α = 1); images 1
    # and 2 hold one region each, so only their diagonal (<t,t> = 1 = <c,c>) counts and their text
    # may point anywhere. Raw scales do not matter (normalised inside).
    t = c.clone()
    t[3:] = torch.randn(2, 16, generator=gen)
    loss = tgkd_loss(2.5 * c, c, 4.0 * t, image_index, torch.tensor(1.0))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # only α² enters: α = -1 is just as perfect
    loss = tgkd_loss(c, c, t, image_index, torch.tensor(-1.0))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # and putting regions 3 and 4 in one image makes their mismatched text count
    assert tgkd_loss(c, c, t, torch.tensor([0, 0, 0, 1, 1]), torch.tensor(1.0)).item() > 1e-4


def test_tgkd_loss_gradients_reach_alpha_and_student():
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(4, 8, generator=gen, requires_grad=True)
    alpha = torch.tensor(1.0, requires_grad=True)
    loss = tgkd_loss(student, torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen),
                     torch.tensor([0, 1, 1, 2]), alpha)
    loss.backward()
    assert alpha.grad is not None and alpha.grad.abs().item() > 0
    assert student.grad is not None and student.grad.abs().sum().item() > 0


def test_tgkd_loss_empty():
    student = torch.zeros(0, 8, requires_grad=True)
    alpha = torch.tensor(1.0, requires_grad=True)
    loss = tgkd_loss(student, torch.zeros(0, 8), torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), alpha)
    assert loss.shape == () and loss.item() == 0.0
    loss.backward()
    assert alpha.grad is not None and alpha.grad.item() == 0.0
    assert student.grad is not None and student.grad.shape == (0, 8)


def test_tgkd_loss_shape_checks():
    with pytest.raises(ValueError):
        tgkd_loss(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 4), torch.zeros(3), torch.tensor(1.0))
    with pytest.raises(ValueError):
        tgkd_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2), torch.tensor(1.0))


# -------------------------------------------------------------------------------------------- crops

INSIDE = (255, 0, 255)      # extreme values: bicubic over/undershoot must be clamped
OUTSIDE = (10, 200, 30)     # the image's colour off the mask: must never survive (painted grey)
OTHER = (0, 0, 0)           # image 0's colour: region owner is image 1


def _denorm(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(-1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(-1, 3, 1, 1)
    return (x * std + mean) * 255.0


def _images(height: int = 32, width: int = 32) -> torch.Tensor:
    images = torch.empty(2, 3, height, width, dtype=torch.uint8)
    images[0] = torch.tensor(OTHER, dtype=torch.uint8).view(3, 1, 1)
    images[1] = torch.tensor(OUTSIDE, dtype=torch.uint8).view(3, 1, 1)
    return images


def _colour_close(pixels: torch.Tensor, colour, atol: float = 0.5) -> bool:
    """pixels (3, h, w) all within atol of colour."""
    return bool(((pixels - torch.tensor(colour, dtype=torch.float32).view(3, 1, 1)).abs() <= atol).all())


def test_region_crops_colours_and_grey():
    images = _images()
    # top-right 12x12 corner; its bottom-left 6x6 quadrant is not in the mask (an L shape)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[0:12, 20:32] = True
    mask[6:12, 20:26] = False
    images[1][:, mask] = torch.tensor(INSIDE, dtype=torch.uint8).view(3, 1)
    out = region_crops(images, [mask], [1], size=24)
    assert out.shape == (1, 3, 24, 24) and out.dtype == torch.float32
    px = _denorm(out)[0]
    assert px.min() >= -1e-3 and px.max() <= 255 + 1e-3            # clamped to [0, 255]
    # 2x upscale of a 12x12 box: each 6x6 input quadrant -> 12x12; check away from the seams
    assert _colour_close(px[:, 0:8, 0:8], INSIDE)                  # top-left: mask
    assert _colour_close(px[:, 0:8, 16:24], INSIDE)                # top-right: mask
    assert _colour_close(px[:, 16:24, 16:24], INSIDE)              # bottom-right: mask
    assert _colour_close(px[:, 16:24, 0:8], (128, 128, 128))       # bottom-left: box but not mask -> grey
    # the image's own colour off the mask never shows (it is painted grey first)
    off = torch.tensor(OUTSIDE, dtype=torch.float32).view(3, 1, 1)
    assert ((px - off).abs().amax(dim=0) > 20).all()


def test_region_crops_box_is_tight_and_owner_respected():
    images = _images(40, 48)
    # a full 20x12 rectangle in the bottom-left corner of image 1; aspect not kept, downscaled to 8
    mask = torch.zeros(40, 48, dtype=torch.bool)
    mask[20:40, 0:12] = True
    images[1][:, mask] = torch.tensor(INSIDE, dtype=torch.uint8).view(3, 1)
    # a second region of image 0 (uniformly OTHER): whole-image mask
    out = region_crops(images, [mask, torch.ones(40, 48, dtype=torch.bool)], [1, 0], size=8, fill=77)
    assert out.shape == (2, 3, 8, 8)
    px = _denorm(out)
    # tight box: only the mask's colour, no grey (a loose box would include painted pixels)
    assert _colour_close(px[0], INSIDE)
    assert _colour_close(px[1], OTHER)
    # exact normalisation of a uniform colour
    expected = (torch.tensor(INSIDE) / 255.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(out[0, :, 4, 4], expected.float(), atol=1e-4)


def test_region_crops_fill_value():
    images = _images()
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[0, 0] = mask[31, 31] = True                               # box = whole image, 2 mask pixels
    out = region_crops(images, [mask], [1], size=16, fill=77)
    px = _denorm(out)[0]
    assert _colour_close(px[:, 4:12, 4:12], (77, 77, 77))


def test_region_crops_errors_and_empty_list():
    images = _images()
    empty = torch.zeros(32, 32, dtype=torch.bool)
    with pytest.raises(ValueError, match="empty"):
        region_crops(images, [empty], [0], size=8)
    with pytest.raises(ValueError):
        region_crops(images, [torch.ones(16, 16, dtype=torch.bool)], [0], size=8)
    with pytest.raises(ValueError):
        region_crops(images, [torch.ones(32, 32, dtype=torch.bool)], [0, 1], size=8)
    out = region_crops(images, [], [], size=8)
    assert out.shape == (0, 3, 8, 8) and out.dtype == torch.float32


# ----------------------------------------------------------------------------------------- subsample

def test_subsample():
    assert MAX_LIST_LEN == 200
    idx = subsample(1000, generator=torch.Generator().manual_seed(0))
    assert idx.dtype == torch.int64 and idx.shape == (200,)
    assert torch.equal(idx, idx.sort().values) and idx.unique().numel() == 200
    assert idx.min() >= 0 and idx.max() < 1000
    again = subsample(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    assert not torch.equal(idx, subsample(1000, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(subsample(7, max_regions=3, generator=torch.Generator().manual_seed(2)).sort().values,
                       subsample(7, max_regions=3, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(subsample(50), torch.arange(50))
    assert torch.equal(subsample(200), torch.arange(200))
    assert subsample(0).shape == (0,) and subsample(0).dtype == torch.int64


# ------------------------------------------------------------------------------------------- head

def test_tgkd_head():
    head = TGKDHead(in_dim=8, teacher_dim=4, num_outputs=3)
    assert len(head.projections) == 3
    assert len({id(p) for p in head.projections}) == 3
    assert all(isinstance(p, torch.nn.Linear) and p.in_features == 8 and p.out_features == 4
               for p in head.projections)
    assert head.alpha.item() == 1.0 and head.alpha.requires_grad and head.alpha.shape == ()
    gen = torch.Generator().manual_seed(0)
    queries = [torch.randn(5, 8, generator=gen) for _ in range(3)]
    teacher, text = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    image_index = torch.tensor([0, 0, 1, 1, 1])
    losses = head(queries, teacher, text, image_index)
    assert len(losses) == 3 and all(loss.shape == () for loss in losses)
    for proj, q, loss in zip(head.projections, queries, losses):
        assert torch.allclose(loss, tgkd_loss(proj(q), teacher, text, image_index, head.alpha))
    sum(losses).backward()
    assert head.alpha.grad is not None
    assert all(p.weight.grad is not None for p in head.projections)
    with pytest.raises(ValueError):
        head(queries[:2], teacher, text, image_index)


def test_tgkd_loss_float32_under_half_inputs():
    s, c, t, image_index = _example()
    loss = tgkd_loss(s.bfloat16(), c.half(), t, image_index, torch.tensor(0.5))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(5.6875 / 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = tgkd_loss(s, c, t, image_index, torch.tensor(0.5))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(5.6875 / 8)
