"""CLIP over open_clip, offline: any open_clip architecture, random or from a local checkpoint file.

:class:`Clip` never downloads: ``pretrained`` is ``None`` (random weights, seeded) or the path of
a local checkpoint that open_clip loads; architectures whose text tower comes from Hugging Face
are refused. It gives

- text embeddings of class names under prompt templates (:mod:`ovbench.models.prompts`),
  L2-normalised and cached by (architecture, checkpoint digest, template, name), in memory and
  optionally on disk;
- the visual trunk's multi-scale features: ResNets' res2-res5 maps, ViTs' intermediate tokens as
  ``(B, C, H/patch, W/patch)`` maps, at any input size (ViT positional embeddings are interpolated);
- image embeddings, L2-normalised;
- dense (MaskCLIP) embeddings: one joint-space vector per patch / stride-32 cell.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ovbench.errors import OvbenchError

#: The features a ResNet trunk exposes (open_clip ModifiedResNet blocks 1-4 after the stem).
RESNET_LEVELS = ("res2", "res3", "res4", "res5")
#: ovbench's own small architectures (``tiny-vit``, ``tiny-rn``: 64 px, 64-d), registered with open_clip.
CONFIG_DIR = Path(__file__).with_name("configs")
#: CLIP's image normalisation (open_clip's OPENAI_DATASET_MEAN / STD), RGB in [0, 1].
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_clip_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` → CLIP-normalised float32 ``(B, 3, H, W)``."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images, dtype=np.float32))
    x = x.permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def register_configs() -> None:
    """Make the architectures in :data:`CONFIG_DIR` known to open_clip (idempotent)."""
    import open_clip
    if not all(p.stem in open_clip.list_models() for p in CONFIG_DIR.glob("*.json")):
        open_clip.add_model_config(CONFIG_DIR)


def file_digest(path: Path) -> str:
    """SHA-256 (hex, first 16 chars) of a checkpoint file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Clip:
    """An open_clip model with cached text embeddings and trunk features.

    ``name`` is an open_clip architecture (``"RN50"``, ``"ViT-B-16"``, …, or one of ovbench's
    :data:`CONFIG_DIR` configs such as ``"tiny-vit"``); ``pretrained`` a local checkpoint path or ``None`` for
    random weights drawn with ``seed``; ``cache_dir`` keeps text embeddings across runs.
    """

    def __init__(self, name: str, pretrained: Path | str | None = None, device: str | torch.device = "cpu",
                 cache_dir: Path | str | None = None, seed: int = 0) -> None:
        import open_clip
        register_configs()
        if name not in open_clip.list_models():
            raise OvbenchError(f"unknown open_clip architecture {name!r}; `open_clip.list_models()` lists them")
        text_cfg = open_clip.get_model_config(name).get("text_cfg", {})
        if text_cfg.get("hf_model_name") or text_cfg.get("hf_tokenizer_name"):
            raise OvbenchError(f"{name}: its text tower or tokenizer comes from Hugging Face and would be "
                               f"downloaded; ovbench runs offline, pick a CLIP architecture with the built-in tokenizer")
        if pretrained is not None:
            path = Path(pretrained)
            if not path.is_file():
                raise OvbenchError(f"{path}: CLIP checkpoint not found; pass the path of a local open_clip / "
                                   f"OpenAI checkpoint file (ovbench never downloads weights)")
            self.digest = file_digest(path)
            weights: str | None = str(path)
        else:
            self.digest = f"random-seed{seed}"
            weights = None
        torch.manual_seed(seed)
        self.name = name
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)        # open_clip warns that random weights are random
        try:
            self.model = open_clip.create_model(name, pretrained=weights, device=device, pretrained_text=False)
        finally:
            root.setLevel(level)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, np.ndarray] = {}

    def to(self, device: torch.device | str) -> "Clip":
        """Move the model to ``device`` (cached text embeddings stay on the CPU); returns ``self``."""
        self.model.to(device)
        self.device = torch.device(device)
        return self

    def clear_text_cache(self) -> None:
        """Forget the in-memory text embeddings (a ``cache_dir`` on disk is kept)."""
        self._memory.clear()

    @property
    def embed_dim(self) -> int:
        """Width of the joint image-text space."""
        return int(self.model.text_projection.shape[-1] if isinstance(self.model.text_projection, torch.Tensor)
                   else self.model.text_projection.out_features)

    def _key(self, template: str, name: str) -> str:
        raw = json.dumps([self.name, self.digest, template, name], ensure_ascii=True)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    @torch.no_grad()
    def encode_text(self, names: Sequence[str], template: str = "a photo of a {}.") -> torch.Tensor:
        """Normalised embeddings of ``template.format(name)`` for each name, shape ``(N, D)`` float32."""
        if "{}" not in template:
            raise OvbenchError(f"prompt template {template!r} has no '{{}}' for the class name")
        keys = [self._key(template, n) for n in names]
        missing = [(k, n) for k, n in zip(keys, names) if self._lookup(k) is None]
        if missing:
            tokens = self.tokenizer([template.format(n) for _, n in missing]).to(self.device)
            emb = self.model.encode_text(tokens).float()
            emb = torch.nn.functional.normalize(emb, dim=-1).cpu().numpy()
            for (k, _), e in zip(missing, emb):
                self._store(k, e)
        return torch.from_numpy(np.stack([self._lookup(k) for k in keys]))

    def _lookup(self, key: str) -> np.ndarray | None:
        if key in self._memory:
            return self._memory[key]
        if self.cache_dir is not None and (self.cache_dir / f"{key}.npy").is_file():
            self._memory[key] = np.load(self.cache_dir / f"{key}.npy")
            return self._memory[key]
        return None

    def _store(self, key: str, emb: np.ndarray) -> None:
        self._memory[key] = emb.astype(np.float32)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_dir / f".{key}.tmp.npy"
            np.save(tmp, self._memory[key])
            tmp.replace(self.cache_dir / f"{key}.npy")

    def name_embeddings(self, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Each name's embedding averaged over ``templates`` and re-normalised, ``(N, D)``."""
        stacked = torch.stack([self.encode_text(names, t) for t in templates]).mean(dim=0)
        return torch.nn.functional.normalize(stacked, dim=-1)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings of ``images`` ``(B, 3, H, W)`` (CLIP-normalised), ``(B, D)``."""
        return torch.nn.functional.normalize(self.model.encode_image(images.to(self.device)).float(), dim=-1)

    def trunk_features(self, images: torch.Tensor, layers: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Multi-scale maps of the visual trunk for ``images`` ``(B, 3, H, W)``.

        ResNets: ``res2`` … ``res5`` at strides 4, 8, 16, 32. ViTs: ``layer{i}`` for each index
        in ``layers`` (default: the last four blocks), ``(B, width, H/patch, W/patch)``; ``H`` and ``W``
        must be multiples of the patch size (any multiple: positional embeddings are interpolated).
        Gradients flow (the caller decides whether the trunk is frozen).
        """
        visual = self.model.visual
        if self.is_resnet:
            out = visual.forward_intermediates(images, indices=[1, 2, 3, 4], intermediates_only=True)
            return dict(zip(RESNET_LEVELS, out["image_intermediates"]))
        depth = len(visual.transformer.resblocks)
        take = list(layers) if layers is not None else list(range(depth - 4, depth))
        if not take or any(not 0 <= i < depth for i in take):
            raise OvbenchError(f"{self.name}: ViT block indices {take}: give one or more in range 0..{depth - 1}")
        grid = self._grid(images)
        tokens = self._vit_embed(images, grid)
        maps = {}
        for i, block in enumerate(visual.transformer.resblocks[:max(take) + 1]):
            tokens = block(tokens)
            if i in take:
                maps[i] = self._token_map(tokens, grid)
        return {f"layer{i}": maps[i] for i in take}

    @torch.no_grad()
    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """MaskCLIP dense embeddings (Zhou et al., ECCV 2022) of ``images`` ``(B, 3, H, W)``
        (CLIP-normalised; ``H``, ``W`` multiples of :attr:`stride`): ``(B, D, H/stride, W/stride)``
        float32, L2-normalised along ``D``, in the joint image-text space (compare with
        :meth:`encode_text` by a dot product: cosine similarity).

        ViTs: blocks ``0 .. L-2`` as usual; of the last block only its value path
        ``ls_1(out_proj(value(ln_1(x))))`` per token (no residual, no query-key attention, no MLP),
        then ``ln_post`` and ``proj`` on the patch tokens. ResNets: the trunk up to res5, then the
        attention pool's value path as 1x1 convolutions, ``c_proj(v_proj(x))`` at every position
        (MaskCLIP's ResNet head: no positional embedding, no attention).
        """
        images = images.to(self.device)
        grid = self._grid(images)
        if self.is_resnet:
            dense = self._resnet_value_path(images)
        else:
            dense = self._vit_value_path(images, grid)
        return F.normalize(dense.float(), dim=1)

    @property
    def stride(self) -> int:
        """Pixels per dense-embedding cell: the ViT patch size, or 32 for ResNets."""
        return 32 if self.is_resnet else int(self.model.visual.patch_size[0])

    def _grid(self, images: torch.Tensor) -> tuple[int, int]:
        """``(H / stride, W / stride)`` of ``images`` ``(B, 3, H, W)``; OvbenchError unless both divide."""
        height, width = images.shape[-2:]
        if height % self.stride or width % self.stride:
            raise OvbenchError(f"{self.name}: input {height}x{width} px; both sides must be multiples of "
                               f"{self.stride} px (the {'ResNet stride' if self.is_resnet else 'patch size'}); "
                               f"resize or pad the images")
        return height // self.stride, width // self.stride

    def _vit_embed(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch + class tokens with positional embeddings for ``grid``, after ``ln_pre``:
        ``(B, 1 + gh * gw, width)`` (batch first)."""
        visual = self.model.visual
        if not visual.transformer.batch_first:
            raise OvbenchError(f"{self.name}: only batch-first ViT transformers are supported")
        x = visual.conv1(images).flatten(2).transpose(1, 2)                 # (B, gh * gw, width)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + vit_positional_embedding(visual, grid).to(x.dtype)
        return visual.ln_pre(visual.patch_dropout(x))

    @staticmethod
    def _token_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch tokens ``(B, 1 + gh * gw, C)`` (class token first) → map ``(B, C, gh, gw)``."""
        return tokens[:, 1:].unflatten(1, grid).permute(0, 3, 1, 2).contiguous()

    def _vit_value_path(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """MaskCLIP's ViT head: ``(B, D, gh, gw)``, not normalised."""
        visual = self.model.visual
        last = visual.transformer.resblocks[-1]
        if not isinstance(last.attn, nn.MultiheadAttention) or last.attn.in_proj_weight is None:
            raise OvbenchError(f"{self.name}: MaskCLIP needs the last ViT block's attention to be a "
                               f"torch MultiheadAttention with a packed in-projection")
        if visual.attn_pool is not None:
            raise OvbenchError(f"{self.name}: MaskCLIP does not support ViTs with an attentional pooler")
        x = self._vit_embed(images, grid)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        v = last.ls_1(attention_value_path(last.attn, last.ln_1(x)))
        v = visual.ln_post(v) @ visual.proj                                 # (B, 1 + gh * gw, D)
        return self._token_map(v, grid)

    def _resnet_value_path(self, images: torch.Tensor) -> torch.Tensor:
        """MaskCLIP's ResNet head: ``c_proj(v_proj(res5))`` per position, ``(B, D, H/32, W/32)``,
        not normalised."""
        visual = self.model.visual
        res5 = visual.forward_intermediates(images, indices=[4], intermediates_only=True)["image_intermediates"][0]
        pool = visual.attnpool
        x = pool.c_proj(pool.v_proj(res5.permute(0, 2, 3, 1)))              # (B, h, w, D)
        return x.permute(0, 3, 1, 2)

    @property
    def is_resnet(self) -> bool:
        return hasattr(self.model.visual, "attnpool")


class ClipTextTower(nn.Module):
    """The text side of an open_clip model (every child but ``visual``, and the model's own
    parameters such as the positional embedding and text projection), sharing the model's tensors;
    for counting and inspecting it apart from the image tower."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name, child in model.named_children():
            if name != "visual":
                self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)


def text_tower(clip: "Clip") -> ClipTextTower:
    """:class:`ClipTextTower` of ``clip``'s model."""
    return ClipTextTower(clip.model)


def vit_positional_embedding(visual: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """An open_clip ViT's positional embedding for a ``grid`` = ``(gh, gw)`` patch grid,
    ``(1 + gh * gw, width)``: the class token's row as is, the patch rows bicubically
    interpolated (``align_corners=False``) from the native grid; unchanged at the native grid."""
    pos = visual.positional_embedding
    native = tuple(visual.grid_size)
    if tuple(grid) == native:
        return pos
    patches = pos[1:].reshape(*native, -1).permute(2, 0, 1).unsqueeze(0)  # (1, width, *native)
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], patches[0].flatten(1).T], dim=0)


def attention_value_path(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Each token through ``attn``'s value and output projections only, ``out_proj(W_v x + b_v)``
    (as if every token attended to itself alone): ``(..., width)`` → ``(..., width)``."""
    width = attn.embed_dim
    bias = attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None
    return attn.out_proj(F.linear(x, attn.in_proj_weight[2 * width:], bias))
