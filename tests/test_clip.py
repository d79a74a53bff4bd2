"""The offline CLIP wrapper: local checkpoints only, cached text embeddings, trunk features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip, file_digest, vit_positional_embedding
from ovbench.models.prompts import templates
from ovbench.models.zoo import WEIGHTS_DIR


@pytest.fixture(scope="module")
def tiny() -> Clip:
    return Clip("tiny-vit", seed=1)


def test_refuses_a_missing_checkpoint_and_unknown_architecture(tmp_path):
    with pytest.raises(OvbenchError, match="never downloads"):
        Clip("tiny-vit", pretrained=tmp_path / "weights.pt")
    with pytest.raises(OvbenchError, match="unknown open_clip architecture"):
        Clip("tiny-nothing")


def test_refuses_architectures_that_would_download_a_tokenizer():
    with pytest.raises(OvbenchError, match="Hugging Face"):
        Clip("coca_roberta-ViT-B-32")


def test_loads_a_local_checkpoint_and_keys_its_cache_by_digest(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    loaded = Clip("tiny-vit", pretrained=path)
    assert loaded.digest == file_digest(path) != tiny.digest
    torch.testing.assert_close(loaded.encode_text(["cat", "dog"]), tiny.encode_text(["cat", "dog"]))
    assert not torch.allclose(Clip("tiny-vit", seed=2).encode_text(["cat"]), tiny.encode_text(["cat"]))


def test_text_embeddings_are_normalised_and_cached(tmp_path, monkeypatch):
    clip = Clip("tiny-vit", cache_dir=tmp_path / "cache")
    first = clip.encode_text(["cat", "dog"], "a photo of a {}.")
    assert first.shape == (2, clip.embed_dim)
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(2))
    calls = []
    original = clip.model.encode_text
    monkeypatch.setattr(clip.model, "encode_text", lambda t: calls.append(len(t)) or original(t))
    again = clip.encode_text(["dog", "cat", "cow"], "a photo of a {}.")
    assert calls == [1]                                         # only "cow" was encoded
    torch.testing.assert_close(again[:2], first.flip(0))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3
    fresh = Clip("tiny-vit", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(fresh.model, "encode_text", lambda t: pytest.fail("should come from the disk cache"))
    torch.testing.assert_close(fresh.encode_text(["cat"], "a photo of a {}."), first[:1])
    other = clip.encode_text(["cat"], "a drawing of a {}.")
    assert not torch.allclose(other, first[:1])                # the template is part of the key


def test_name_embeddings_average_templates(tiny):
    names = ["cat", "dog"]
    expected = torch.nn.functional.normalize(
        torch.stack([tiny.encode_text(names, t) for t in templates("scene")]).mean(0), dim=-1)
    torch.testing.assert_close(tiny.name_embeddings(names, templates("scene")), expected)
    with pytest.raises(OvbenchError, match="no '\\{\\}'"):
        tiny.encode_text(["cat"], "a photo")
    with pytest.raises(OvbenchError, match="unknown prompt template set"):
        templates("nope")


def test_trunk_features_of_resnet_and_vit(tiny):
    images = torch.randn(2, 3, 64, 64)
    vit = tiny.trunk_features(images, layers=[1, 3])
    assert list(vit) == ["layer1", "layer3"] and vit["layer3"].shape == (2, 64, 8, 8)
    rn = Clip("tiny-rn")
    feats = rn.trunk_features(images)
    assert [(k, v.shape[-1]) for k, v in feats.items()] == [("res2", 16), ("res3", 8), ("res4", 4), ("res5", 2)]
    emb = rn.encode_image(images)
    assert emb.shape == (2, 64) and np.allclose(emb.norm(dim=-1).numpy(), 1.0)


# ---------------------------------------------------------------- ViT at any size, dense (MaskCLIP) embeddings

@pytest.fixture(scope="module")
def synth() -> Clip:
    return Clip("tiny-vit", pretrained=WEIGHTS_DIR / "tiny-vit-synth.pt")


def _layer_norm(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _maskclip_vit(clip: Clip, images: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's ViT head, step by step from the weights: ``(B, D, H/8, W/8)``."""
    v = clip.model.visual
    grid = (images.shape[2] // 8, images.shape[3] // 8)
    x = F.conv2d(images, v.conv1.weight, stride=8).flatten(2).transpose(1, 2)
    pos = v.positional_embedding
    patch_pos = F.interpolate(pos[1:].reshape(8, 8, -1).permute(2, 0, 1)[None], size=grid, mode="bicubic",
                              align_corners=False)[0].flatten(1).T
    cls = (v.class_embedding + pos[0]).expand(len(images), 1, -1)
    x = _layer_norm(torch.cat([cls, x + patch_pos], dim=1), v.ln_pre)
    blocks = v.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    last = blocks[-1]
    assert isinstance(last.ls_1, torch.nn.Identity)
    w_v, b_v = last.attn.in_proj_weight.chunk(3)[2], last.attn.in_proj_bias.chunk(3)[2]
    y = _layer_norm(x[:, 1:], last.ln_1) @ w_v.T + b_v
    y = y @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
    y = _layer_norm(y, v.ln_post) @ v.proj
    return F.normalize(y, dim=-1).unflatten(1, grid).permute(0, 3, 1, 2)


def test_vit_trunk_matches_open_clip_at_native_size_and_passes_gradients():
    clip = Clip("tiny-vit", seed=3)
    images = torch.randn(2, 3, 64, 64, requires_grad=True)
    ours = clip.trunk_features(images, layers=[0, 1, 2, 3])
    theirs = clip.model.visual.forward_intermediates(images, indices=[0, 1, 2, 3], intermediates_only=True)
    for got, want in zip(ours.values(), theirs["image_intermediates"]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    ours["layer3"].square().sum().backward()
    assert images.grad.abs().sum() > 0 and clip.model.visual.positional_embedding.grad.abs().sum() > 0


def test_vit_trunk_at_other_sizes(tiny):
    feats = tiny.trunk_features(torch.randn(2, 3, 128, 96))
    assert list(feats) == ["layer0", "layer1", "layer2", "layer3"] and feats["layer3"].shape == (2, 64, 16, 12)
    visual = tiny.model.visual
    assert vit_positional_embedding(visual, (8, 8)) is visual.positional_embedding
    pos = vit_positional_embedding(visual, (16, 12))
    assert pos.shape == (1 + 16 * 12, 64) and torch.equal(pos[0], visual.positional_embedding[0])
    with pytest.raises(OvbenchError, match="multiples of 8"):
        tiny.trunk_features(torch.randn(1, 3, 60, 64))
    for layers in ([4], []):
        with pytest.raises(OvbenchError, match="in range 0..3"):
            tiny.trunk_features(torch.randn(1, 3, 64, 64), layers=layers)


@pytest.mark.parametrize("size", [(64, 64), (128, 96)])
def test_vit_dense_embeddings_follow_maskclip(synth, size):
    images = torch.randn(2, 3, *size)
    dense = synth.dense_embeddings(images)
    assert dense.shape == (2, 64, size[0] // 8, size[1] // 8) and synth.stride == 8
    torch.testing.assert_close(dense.norm(dim=1), torch.ones(2, size[0] // 8, size[1] // 8))
    with torch.no_grad():
        torch.testing.assert_close(dense, _maskclip_vit(synth, images), atol=1e-5, rtol=1e-4)
        # not a no-op: the ordinary last block (attention + MLP) gives other embeddings
        last = synth.trunk_features(images, layers=[3])["layer3"].permute(0, 2, 3, 1)
        visual = synth.model.visual
        ordinary = F.normalize(visual.ln_post(last) @ visual.proj, dim=-1).permute(0, 3, 1, 2)
    assert (dense * ordinary).sum(dim=1).mean() < 0.9


def test_resnet_dense_embeddings_are_the_attention_pool_value_path():
    rn = Clip("tiny-rn")
    pool = rn.model.visual.attnpool
    for size, cells in ((64, 2), (128, 4)):
        images = torch.randn(2, 3, size, size)
        dense = rn.dense_embeddings(images)
        assert dense.shape == (2, 64, cells, cells) and rn.stride == 32
        with torch.no_grad():
            res5 = rn.trunk_features(images)["res5"]
            v = torch.einsum("bchw,oc->bohw", res5, pool.v_proj.weight) + pool.v_proj.bias.view(1, -1, 1, 1)
            out = torch.einsum("bchw,oc->bohw", v, pool.c_proj.weight) + pool.c_proj.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(dense, F.normalize(out, dim=1), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(dense.norm(dim=1), torch.ones(2, cells, cells))
    with pytest.raises(OvbenchError, match="multiples of 32"):
        rn.dense_embeddings(torch.randn(1, 3, 80, 64))
