"""The Mask2Former-style open-vocabulary segmenter (ovbench.models.segmenter): shapes, matching, losses,
masked attention, inference, and a tiny overfit."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from ovbench.models.segmenter import (ClipTrunk, CosineClassifier, HungarianMatcher, MaskedTransformerDecoder,
                                      Segmenter, SetCriterion, TorchvisionResNetTrunk, attention_mask, dice_loss,
                                      max_pool_names, prepare_targets, probe_channels, semantic_inference,
                                      sigmoid_ce_loss)
from ovbench.models.segmenter.matcher import pairwise_dice, pairwise_sigmoid_ce
from ovbench.models.segmenter.points import uncertain_point_coords

SMALL = dict(num_queries=6, hidden_dim=32, conv_dim=32, mask_dim=32, nheads=4, dim_feedforward=64, dec_layers=3)


def square(size: int, y0: int, x0: int, side: int) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[y0:y0 + side, x0:x0 + side] = 1
    return m


class ToyTrunk(nn.Module):
    """Four conv stages at strides 4, 8, 16, 32 (fast stand-in for a ResNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([nn.Conv2d(3, 8, 4, stride=4), nn.Conv2d(8, 16, 2, stride=2),
                                     nn.Conv2d(16, 16, 2, stride=2), nn.Conv2d(16, 16, 2, stride=2)])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, stage in enumerate(self.stages):
            x = torch.relu(stage(x))
            out[f"res{i + 2}"] = x
        return out


def test_shapes_through_model_with_tiny_clip_trunk():
    from ovbench.models.clip import Clip
    clip = Clip("tiny-rn")
    torch.manual_seed(0)
    trunk = ClipTrunk(clip)
    assert list(probe_channels(trunk).items()) == [("res2", 64), ("res3", 128), ("res4", 256), ("res5", 512)]
    model = Segmenter(trunk, clip.embed_dim, criterion=SetCriterion(num_points=64), **SMALL)
    assert {id(p) for p in clip.model.visual.parameters()} <= {id(p) for p in model.parameters()}
    text = clip.name_embeddings(["cat", "dog", "sky"], ["{}"])
    out = model(torch.randn(2, 3, 64, 64), text)
    assert out["pred_logits"].shape == (2, 6, 4)
    assert out["pred_masks"].shape == (2, 6, 16, 16)
    assert out["pred_embeds"].shape == (2, 6, clip.embed_dim)
    assert len(out["aux_outputs"]) == 3
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == (2, 6, 4) and aux["pred_masks"].shape == (2, 6, 16, 16)
    targets = [[(0, square(64, 8, 8, 24)), (2, 1 - square(64, 8, 8, 24))], [(1, square(64, 30, 30, 20))]]
    losses = model.losses(out, targets)
    assert {f"loss_{k}_{i}" for k in ("ce", "mask", "dice") for i in range(3)} < set(losses)
    assert torch.isfinite(losses["loss_total"])
    losses["loss_total"].backward()
    assert model.classifier.logit_scale.grad is not None
    assert model.transformer_decoder.query_feat.weight.grad.abs().sum() > 0
    scores, labels = model.semantic_inference(out, [0, 1, 0], out_size=(64, 64))
    assert scores.shape == (2, 2, 64, 64) and labels.shape == (2, 64, 64)


def test_torchvision_resnet_trunk_levels():
    from torchvision.models import resnet18
    trunk = TorchvisionResNetTrunk(resnet18())
    feats = trunk(torch.zeros(1, 3, 64, 64))
    assert [tuple(v.shape) for v in feats.values()] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4),
                                                        (1, 512, 2, 2)]
    assert list(probe_channels(trunk)) == ["res2", "res3", "res4", "res5"]


def brute_force(cost: torch.Tensor) -> float:
    n, m = cost.shape
    return min(sum(cost[q, t].item() for t, q in enumerate(perm)) for perm in itertools.permutations(range(n), m))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matcher_equals_brute_force(seed):
    torch.manual_seed(seed)
    logits, masks = torch.randn(5, 4), torch.randn(5, 8, 8)
    labels, tgt = torch.tensor([0, 2, 1]), (torch.rand(3, 16, 16) > 0.5).float()
    matcher = HungarianMatcher(num_points=64)
    torch.manual_seed(100)
    cost = matcher.cost_matrix(logits, masks, labels, tgt)
    torch.manual_seed(100)
    (q, t), = matcher(logits[None], masks[None], [{"labels": labels, "masks": tgt}])
    assert sorted(t.tolist()) == [0, 1, 2] and len(set(q.tolist())) == 3
    assert cost[q, t].sum().item() == pytest.approx(brute_force(cost), abs=1e-5)


def test_matcher_cost_terms_and_weights():
    torch.manual_seed(0)
    x, t = torch.randn(4, 10), (torch.rand(3, 10) > 0.5).float()
    bce = torch.stack([torch.stack([nn.functional.binary_cross_entropy_with_logits(x[i], t[j])
                                    for j in range(3)]) for i in range(4)])
    torch.testing.assert_close(pairwise_sigmoid_ce(x, t), bce)
    dice = torch.stack([torch.stack([dice_loss(x[i:i + 1], t[j:j + 1], 1.0) for j in range(3)]) for i in range(4)])
    torch.testing.assert_close(pairwise_dice(x, t), dice)
    logits, masks = torch.randn(4, 3), torch.randn(4, 8, 8)
    labels, tgt = torch.tensor([1, 0]), (torch.rand(2, 8, 8) > 0.5).float()
    only_class = HungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0, num_points=16)
    torch.testing.assert_close(only_class.cost_matrix(logits, masks, labels, tgt), -logits.softmax(-1)[:, labels])


def test_matcher_picks_the_right_masks():
    tgt = torch.stack([square(32, 0, 0, 16), square(32, 16, 16, 16)])
    masks = torch.stack([torch.zeros(32, 32) - 10, (tgt[1] * 2 - 1) * 10, (tgt[0] * 2 - 1) * 10])
    logits = torch.zeros(3, 3)
    (q, t), = HungarianMatcher(num_points=256)(logits[None], masks[None], [{"labels": torch.tensor([0, 1]),
                                                                              "masks": tgt}])
    assert dict(zip(t.tolist(), q.tolist())) == {0: 2, 1: 1}


def test_dice_and_bce_on_hand_made_masks():
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    perfect = (target * 2 - 1) * 30
    assert dice_loss(perfect, target, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert sigmoid_ce_loss(perfect, target, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    inverted = -perfect
    assert dice_loss(inverted, target, 1.0).item() == pytest.approx(1 - 1 / 9, abs=1e-6)   # (0 + 1) / (4 + 4 + 1)
    assert sigmoid_ce_loss(inverted, target, 1.0).item() == pytest.approx(30.0, abs=1e-4)
    half = torch.tensor([[30.0, 30.0, -30.0, -30.0, 30.0, 30.0, -30.0, -30.0]])             # overlap 2 of 4
    assert dice_loss(half, target, 1.0).item() == pytest.approx(1 - 5 / 9, abs=1e-6)
    zeros = torch.zeros(1, 8)                                                               # σ = 0.5 everywhere
    assert sigmoid_ce_loss(zeros, target, 1.0).item() == pytest.approx(math.log(2), abs=1e-6)
    assert dice_loss(torch.cat([perfect, inverted]), torch.cat([target, target]), 2.0).item() == pytest.approx(4 / 9)


def test_importance_sampling_prefers_uncertain_points():
    torch.manual_seed(0)
    x = (torch.arange(64.0) + 0.5) / 64
    logits = (20 * (x - 0.5)).expand(64, 64)[None, None].repeat(2, 1, 1, 1)   # |logit| smallest at x = 0.5
    coords = uncertain_point_coords(logits, num_points=200, oversample_ratio=3.0, importance_ratio=0.75)
    assert coords.shape == (2, 200, 2) and coords.min() >= 0 and coords.max() <= 1
    assert ((coords[:, :150, 0] - 0.5).abs() < 0.2).all()          # the 150 most uncertain of 600 draws
    assert ((coords[:, 150:, 0] - 0.5).abs() > 0.2).any()          # the other 50 are uniform


def test_criterion_normalises_by_number_of_masks_and_sums_layers():
    torch.manual_seed(0)
    t0, t1 = square(32, 0, 0, 16), torch.ones(32, 32)
    logits = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]]])
    masks = torch.stack([torch.full((16, 16), -30.0),                                 # empty: dice loss ~ 1
                         torch.full((16, 16), 30.0),                                  # perfect: ~ 0
                         torch.full((16, 16), -30.0)])[None]
    out = {"pred_logits": logits, "pred_masks": masks,
           "aux_outputs": [{"pred_logits": logits, "pred_masks": masks}]}
    crit = SetCriterion(num_points=1000, weight_ce=2.0, weight_mask=5.0, weight_dice=5.0)
    losses = crit(out, [[(0, t0), (1, t1)]])
    # (≈1 + ≈0) / 2 masks; grid_sample's zero padding makes border points of the full mask slightly < 1
    assert losses["loss_dice"].item() == pytest.approx(0.5, abs=0.03)
    assert losses["loss_ce"].item() < 1e-3
    expected = sum(w * losses[f"{k}{sfx}"] for sfx in ("", "_0")
                   for k, w in (("loss_ce", 2.0), ("loss_mask", 5.0), ("loss_dice", 5.0)))
    assert losses["loss_total"].item() == pytest.approx(expected.item())
    assert crit(out, [[]])["loss_dice"].item() == 0.0


def test_loss_labels_void_weight_and_targets():
    crit = SetCriterion(void_weight=0.1)
    logits = torch.randn(1, 3, 3)
    targets = prepare_targets([[(1, torch.ones(4, 4))]], "cpu")
    got = crit.loss_labels(logits, [(torch.tensor([2]), torch.tensor([0]))], targets)
    target = torch.tensor([2, 2, 1])
    w = torch.tensor([0.1, 0.1, 1.0])
    nll = -logits[0].log_softmax(-1)[torch.arange(3), target]
    assert got.item() == pytest.approx(((w * nll).sum() / w.sum()).item(), abs=1e-6)


def test_masked_attention_rule():
    logits = torch.full((1, 3, 4, 4), -5.0)
    logits[0, 1, :2, :2] = 5.0                       # query 1: top-left quarter
    logits[0, 2] = 5.0                               # query 2: everything; query 0: empty
    blocked = attention_mask(logits, (4, 4), num_heads=2)
    assert blocked.shape == (2, 3, 16) and blocked.dtype == torch.bool
    assert not blocked[:, 0].any()                   # empty mask -> attends everywhere
    allowed = ~blocked[0, 1].view(4, 4)
    assert allowed[:2, :2].all() and allowed.sum() == 4
    assert not blocked[:, 2].any()
    torch.testing.assert_close(blocked[0], blocked[1])


def test_cross_attention_only_sees_the_previous_mask():
    torch.manual_seed(0)
    dec = MaskedTransformerDecoder(16, 8, hidden_dim=16, num_queries=3, nheads=2, dim_feedforward=32,
                                   dec_layers=1, mask_dim=4)
    with torch.no_grad():                          # every initial query predicts the left half of the image
        dec.mask_embed.layers[-1].weight.zero_()
        dec.mask_embed.layers[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    mask_features = torch.zeros(1, 4, 4, 4)
    mask_features[0, 0, :, :2], mask_features[0, 0, :, 2:] = 10.0, -10.0
    levels = [torch.randn(1, 16, 4, 4) for _ in range(3)]
    base = dec(levels, mask_features)["pred_embeds"]
    right, left = [x.clone() for x in levels], [x.clone() for x in levels]
    right[0][..., 2:] += 5.0                       # layer 0 attends to level 0
    left[0][..., :2] += 5.0
    torch.testing.assert_close(dec(right, mask_features)["pred_embeds"], base)
    assert not torch.allclose(dec(left, mask_features)["pred_embeds"], base)


def test_decoder_survives_all_empty_masks():
    torch.manual_seed(0)
    model = Segmenter(ToyTrunk(), 8, **SMALL)
    with torch.no_grad():
        model.transformer_decoder.mask_embed.layers[-1].weight.zero_()
        model.transformer_decoder.mask_embed.layers[-1].bias.zero_()
        model.pixel_decoder.mask_features.bias.fill_(-100.0)
        model.pixel_decoder.mask_features.weight.zero_()
    out = model(torch.randn(1, 3, 64, 64), torch.randn(2, 8))
    assert torch.isfinite(out["pred_logits"]).all()


def test_cosine_classifier():
    clf = CosineClassifier(4, init_temperature=0.07)
    text = torch.eye(4)[:2] * 3.0
    emb = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]])
    logits = clf(emb, text)
    assert logits.shape == (1, 2, 3)
    assert logits[0, 0, 0].item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert logits[0, 1, 1].item() == pytest.approx(math.sqrt(0.5) / 0.07, rel=1e-5)
    void = torch.nn.functional.normalize(clf.void_embedding[0], dim=0)
    assert logits[0, 0, 2].item() == pytest.approx(void[0].item() / 0.07, rel=1e-4)
    with torch.no_grad():
        clf.logit_scale.fill_(10.0)
    assert clf(emb, text)[0, 0, 0].item() == pytest.approx(100.0, rel=1e-5)    # clamped as CLIP


def test_multi_name_max_pooling():
    x = torch.tensor([[1.0, 5.0, 3.0, -2.0, 0.5]])
    pooled = max_pool_names(x, [0, 1, 0, 2, 2], dim=-1)
    torch.testing.assert_close(pooled, torch.tensor([[3.0, 5.0, 0.5]]))
    maps = torch.arange(12.0).view(1, 3, 2, 2)
    pooled = max_pool_names(maps, [1, 0, 1], num_classes=3, dim=1)
    torch.testing.assert_close(pooled[0, 0], maps[0, 1])
    torch.testing.assert_close(pooled[0, 1], maps[0, 2])
    assert torch.isinf(pooled[0, 2]).all()


def test_semantic_inference_formula():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]])          # 2 queries, 2 names + void
    masks = torch.tensor([[[[4.0, -4.0]], [[0.0, 2.0]]]])                  # (1, 2, 1, 2)
    p = logits.softmax(-1)[0]
    s = masks.sigmoid()[0, :, 0]
    expected = torch.stack([p[0, k] * s[0] + p[1, k] * s[1] for k in range(2)])   # (K, W)
    scores, labels = semantic_inference(logits, masks)
    torch.testing.assert_close(scores[0, :, 0], expected)
    assert labels[0, 0].tolist() == expected.argmax(0).tolist() == [0, 1]
    # several names per class: max over names, either on the logits (GKC) or on the per-name scores
    logits3 = torch.tensor([[[2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 2.5, 3.0]]])  # names -> classes [0, 1, 1]
    scores, _ = semantic_inference(logits3, masks, name_to_class=[0, 1, 1], pool="logits")
    merged = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 2.5, 3.0]]])
    torch.testing.assert_close(scores, semantic_inference(merged, masks)[0])
    scores, _ = semantic_inference(logits3, masks, name_to_class=[0, 1, 1], pool="scores")
    per_name = semantic_inference(logits3, masks)[0]
    torch.testing.assert_close(scores[:, 1], torch.maximum(per_name[:, 1], per_name[:, 2]))
    up, labels = semantic_inference(logits, masks, out_size=(2, 4))
    assert up.shape == (1, 2, 2, 4) and labels.shape == (1, 2, 4)
    with pytest.raises(ValueError):
        semantic_inference(logits3, masks, name_to_class=[0, 1, 1], pool="mean")


def test_overfit_two_square_images():
    torch.manual_seed(0)
    model = Segmenter(ToyTrunk(), 8, criterion=SetCriterion(num_points=256), **SMALL)
    text = nn.functional.normalize(torch.randn(3, 8), dim=-1)
    images = torch.zeros(2, 3, 64, 64)
    sq_a, sq_b = square(64, 8, 8, 24), square(64, 32, 24, 28)
    images[0, 0] += sq_a
    images[1, 1] += sq_b
    targets = [[(0, sq_a), (2, 1 - sq_a)], [(1, sq_b), (2, 1 - sq_b)]]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    keys = ("loss_total", "loss_ce", "loss_mask", "loss_dice")
    history = []
    for _ in range(20):
        losses = model.losses(model(images, text), targets)
        opt.zero_grad()
        losses["loss_total"].backward()
        opt.step()
        history.append([losses[k].item() for k in keys])
    first, last = history[0], [sum(h[i] for h in history[-3:]) / 3 for i in range(len(keys))]
    for k, a, b in zip(keys, first, last):
        assert b < 0.5 * a, (k, a, b)
    _, labels = model.semantic_inference(model(images, text), out_size=(64, 64))
    gt = torch.stack([torch.where(sq_a > 0, 0, 2), torch.where(sq_b > 0, 1, 2)])
    assert (labels == gt).float().mean() > 0.95


def test_region_dropout_ignores_matched_targets_and_syn_loss_reuses_the_matching():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 3)
    masks = torch.stack([torch.full((16, 16), 30.0), torch.full((16, 16), -30.0), torch.full((16, 16), -30.0)])[None]
    target = [[(1, torch.ones(32, 32), 0)]]
    full = SetCriterion(num_points=64, region_dropout=1.0)
    out = {"pred_logits": logits, "pred_masks": masks, "pred_syn_logits": logits.flip(-1)}
    losses = full(out, target)
    # every matched query dropped: only the two unmatched queries (target void, weight 0.1) remain
    void_nll = -logits[0, 1:].log_softmax(-1)[:, 2]
    assert losses["loss_ce"].item() == pytest.approx(void_nll.mean().item(), abs=1e-6)
    kept = SetCriterion(num_points=64)(out, target)
    assert kept["loss_ce"].item() != pytest.approx(losses["loss_ce"].item())
    # the synonym CE is the same CE on the synonym logits, with the plain logits' assignment
    tgts = prepare_targets(target, "cpu")
    indices = kept_indices = SetCriterion(num_points=64).matcher(logits, masks, tgts)
    syn = SetCriterion().loss_labels(logits.flip(-1), kept_indices, tgts, "syn_labels")
    assert kept["loss_syn"].item() == pytest.approx(syn.item(), abs=1e-6)
    assert indices[0][0].tolist() == [0]
    assert kept["loss_total"].item() == pytest.approx(
        sum(w * kept[k].item() for k, w in (("loss_ce", 2), ("loss_mask", 5), ("loss_dice", 5), ("loss_syn", 2))),
        rel=1e-5)
    assert "loss_syn" not in SetCriterion(num_points=64)({"pred_logits": logits, "pred_masks": masks},
                                                        [[(1, torch.ones(32, 32))]])
