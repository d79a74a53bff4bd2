"""The offline CLIP wrapper: local checkpoints only, cached text embeddings, trunk features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip, file_digest
from ovbench.models.prompts import templates


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
