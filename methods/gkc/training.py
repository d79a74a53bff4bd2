"""Training GKC (spec §3-§5): the segmenter plus text diversification and text-guided knowledge
distillation, as a training method of ``ovbench train`` (``method: {kind: gkc, ...}``).

Per iteration and per ground-truth segment, one synonym is drawn uniformly among the class's kept
synonyms (GKC's ``thresRand``); every image gets its own vocabulary — the K training names with each
present class's slot replaced by its drawn synonym — and ``loss_syn`` is the cross-entropy over it
with the plain loss's Hungarian assignment. With ovbench's semantic (not panoptic) training segments
a class has one segment per image, so GKC's "append a second synonym of the same class" case never
arises. A frozen CLIP image encoder (the teacher) embeds at most ``max_regions`` segments per batch
(grey outside the mask, box crop, CLIP input size); each decoder output's matched queries are
projected by their own head and distilled with the code-form TGKD loss (spec §4.2), the text side
being the drawn synonym's embedding. Matched class targets are dropped with ``region_dropout``.
Inference is the plain segmenter: ``model.pt`` holds no teacher and no distillation head.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from methods.gkc.distillation import TGKDHead, region_crops, subsample, tgkd_loss
from ovbench.engine.distributed import default_device
from ovbench.engine.segmenter_training import (TrainingParts, TrainingSetup, register_training_method,
                                               segments_from_labels, weighted_by_kind)
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.segmenter.losses import SetCriterion
from ovbench.models.segmenter.spec import normalize_images
from ovbench.models.zoo import clip_from_config
from ovbench.protocols import get_protocol
from ovbench.vocab.filter import kept, load_filter
from ovbench.vocab.tables import load_table, synonyms_by_class


@dataclass(frozen=True)
class GKCSettings:
    """The ``method`` section of a GKC run config (defaults: the author's GKC command, spec §5.1, §6).

    ``synonyms``: a synonym table (``builtin``: ``ovbench/vocab/tables/<protocol>.json``, or a path
    relative to the config's folder); ``synonym_filter``: a per-segment CLIP filter file
    (``ovbench vocab filter-synonyms``; relative to the config's folder) whose kept synonyms (p above
    the file's threshold, the class name always) are drawn from — without it, every candidate of
    the table is; ``syn_weight`` 0 turns text diversification off, ``kd_weight`` 0
    turns distillation off (the ablation's variants). ``teacher``: the frozen CLIP image encoder as a
    clip config (default: the model's CLIP, loaded a second time so that fine-tuning the trunk never
    touches it); ``max_regions``: segments distilled per batch (GKC's MAX_LIST_LEN); ``grey``: the
    fill outside a segment's mask in teacher crops (pixel value).
    """

    kind: str = "gkc"
    synonyms: str = "builtin"
    synonym_filter: str | None = None
    syn_weight: float = 2.0
    kd_weight: float = 2.0
    teacher: Mapping[str, Any] | None = None
    max_regions: int = 200
    region_dropout: float = 0.5
    grey: int = 128

    def __post_init__(self) -> None:
        problems = []
        if self.syn_weight < 0 or self.kd_weight < 0:
            problems.append(f"syn_weight and kd_weight must be >= 0, got {self.syn_weight}, {self.kd_weight}")
        if not 0 <= self.region_dropout < 1:
            problems.append(f"region_dropout must be in [0, 1), got {self.region_dropout}")
        if self.max_regions < 1:
            problems.append(f"max_regions must be >= 1, got {self.max_regions}")
        if problems:
            raise OvbenchError("invalid gkc method section: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GKCSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OvbenchError(f"unknown gkc method key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


class SynonymSampler:
    """The candidate synonyms of each training class, embedded once.

    ``names[k]`` lists class k's synonyms (its own name included); ``text`` ``(M, D)`` holds their
    embeddings in order and ``draw(k, segment)`` returns the row of a uniformly drawn synonym of
    class k — among ``kept[segment]`` (names) when the per-segment filter has that segment, else
    among all of the class's candidates (global torch RNG: seeded and checkpointed by the engine).
    """

    def __init__(self, clip: Clip, names: Sequence[Sequence[str]], template: str,
                 kept: Mapping[tuple[str, int], Sequence[str]] | None = None) -> None:
        if any(not n for n in names):
            raise OvbenchError("every training class needs at least one synonym (its own name)")
        flat = [n for class_names in names for n in class_names]
        self.text = clip.encode_text(flat, template)
        starts = torch.tensor([0] + [len(n) for n in names]).cumsum(0).tolist()
        self.rows = [list(range(starts[k], starts[k] + len(n))) for k, n in enumerate(names)]
        self._row_of = [{n: starts[k] + i for i, n in enumerate(class_names)} for k, class_names in enumerate(names)]
        self.kept = kept or {}

    def candidates(self, k: int, segment: tuple[str, int] | None = None) -> list[int]:
        """Rows class k's segment ``(image id, k)`` may draw from."""
        if segment in self.kept:
            rows = [self._row_of[k][n] for n in self.kept[segment] if n in self._row_of[k]]
            if rows:
                return rows
        return self.rows[k]

    def draw(self, k: int, segment: tuple[str, int] | None = None) -> int:
        rows = self.candidates(k, segment)
        return rows[int(torch.randint(len(rows), ()))]


class GKCCriterion(SetCriterion):
    """The set criterion plus TGKD per decoder output (``loss_kd``, weight ``weight_kd``).

    Before each call :meth:`stash` gives the batch's teacher embeddings ``(R, Dt)``, their text
    embeddings ``(R, Dt)`` and, per image, the teacher row of each target segment (-1: not distilled).
    The distillation head is held outside the module tree (it trains as part of the segmenter's
    training module but never lands in the segmenter's state dict).
    """

    def __init__(self, head: TGKDHead | None, weight_kd: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._head = [head]
        self.weights["loss_kd"] = weight_kd
        self._kd: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]] | None = None

    def stash(self, teacher: torch.Tensor, text: torch.Tensor, rows: list[torch.Tensor]) -> None:
        self._kd = (teacher, text, rows)

    def extra_losses(self, output: dict, indices: list, targets: list[dict], index: int) -> dict[str, torch.Tensor]:
        head = self._head[0]
        if head is None or self._kd is None:
            return {}
        teacher, text, rows = self._kd
        query, picked, owner = [], [], []
        for b, (q, t) in enumerate(indices):
            r = rows[b].to(q.device)[t]
            keep = r >= 0
            query.append(output["query_embeds"][b, q[keep].to(output["query_embeds"].device)])
            picked.append(r[keep])
            owner.append(torch.full((int(keep.sum()),), b, dtype=torch.int64))
        picked_rows = torch.cat(picked).to(teacher.device)
        student = head.projections[index](torch.cat(query))
        return {"loss_kd": tgkd_loss(student, teacher[picked_rows], text[picked_rows],
                                     torch.cat(owner).to(student.device), head.alpha)}


class GKCLoss:
    """``loss_fn(model, batch)``: synonym draws, teacher embeddings, the segmenter's forward and the
    criterion (weighted per loss kind)."""

    def __init__(self, settings: GKCSettings, text: torch.Tensor, sampler: SynonymSampler,
                 teacher: Clip | None, normalization: str, image_ids: Sequence[str] | None) -> None:
        self.settings, self.text, self.sampler, self.teacher = settings, text, sampler, teacher
        self.normalization, self.image_ids = normalization, image_ids

    def __call__(self, model: nn.Module, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels, index = batch
        device = images.device
        net = model.module if hasattr(model, "module") else model
        segments = segments_from_labels(labels)
        ids = [self.image_ids[int(i)] if self.image_ids is not None else "" for i in index]
        drawn = ([[self.sampler.draw(k, (iid, k)) for k, _ in segs] for iid, segs in zip(ids, segments)]
                 if self.settings.syn_weight > 0 else None)
        syn_text = None
        if drawn is not None:
            syn_text = self.text.to(device).expand(len(segments), -1, -1).clone()
            for b, segs in enumerate(segments):
                for (k, _), row in zip(segs, drawn[b]):
                    syn_text[b, k] = self.sampler.text[row].to(device)
            targets = [[(k, m, k) for k, m in segs] for segs in segments]
        else:
            targets = segments
        if self.teacher is not None:
            net.criterion.stash(*self._teacher_targets(images, segments, drawn))
        out = model(normalize_images(images, self.normalization), self.text.to(device), syn_text)
        return weighted_by_kind(net.criterion(out, targets), net.criterion.weights)

    @torch.no_grad()
    def _teacher_targets(self, images: torch.Tensor, segments: list[list[tuple[int, torch.Tensor]]],
                         drawn: list[list[int]] | None) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Teacher embeddings ``(R, Dt)`` of at most ``max_regions`` segments, their text embeddings
        (the drawn synonym's, else the class name's) and each image's segment -> teacher row map."""
        flat = [(b, i) for b, segs in enumerate(segments) for i in range(len(segs))]
        chosen = subsample(len(flat), self.settings.max_regions).tolist()
        rows = [torch.full((len(segs),), -1, dtype=torch.int64) for segs in segments]
        masks, owners, text = [], [], []
        for r, j in enumerate(chosen):
            b, i = flat[j]
            rows[b][i] = r
            k, mask = segments[b][i]
            masks.append(mask)
            owners.append(b)
            text.append(self.sampler.text[drawn[b][i]] if drawn is not None else self.text[k])
        size = self.teacher.model.visual.image_size
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        crops = region_crops(images, masks, owners, size, self.settings.grey)
        teacher = (self.teacher.encode_image(crops) if crops.shape[0]
                   else torch.zeros(0, self.teacher.embed_dim))
        dim = self.teacher.embed_dim
        text_rows = torch.stack(text).to(teacher.device) if text else torch.zeros(0, dim)
        return teacher.to(images.device), text_rows.to(images.device), rows


def synonym_names(settings: GKCSettings, setup: TrainingSetup) -> list[list[str]]:
    """Each training class's candidate synonyms from the table (its own name first, deduplicated)."""
    source = setup.run.data.protocol if settings.synonyms == "builtin" else setup.base_dir / settings.synonyms
    table = synonyms_by_class(load_table(source))
    return [[name] + [s for s in table.get(cid, []) if s != name] for cid, name in zip(setup.class_ids, setup.names)]


def filtered_synonyms(settings: GKCSettings, setup: TrainingSetup) -> dict[tuple[str, int], list[str]]:
    """``(image id, training class index)`` -> the synonyms the per-segment filter kept (none: no filter)."""
    if settings.synonym_filter is None:
        return {}
    data = load_filter(setup.base_dir / settings.synonym_filter, get_protocol(setup.run.data.protocol))
    index_of = {cid: k for k, cid in enumerate(setup.class_ids)}
    return {(iid, index_of[int(cid)]): kept(probs, data["threshold"])
            for iid, segs in data["segments"].items() for cid, probs in segs.items() if int(cid) in index_of}


@register_training_method("gkc")
def gkc_training(section: Mapping[str, Any], setup: TrainingSetup) -> TrainingParts:
    """GKC's training parts for ``ovbench train`` (see the module docstring)."""
    settings = GKCSettings.from_dict(section)
    spec, net = setup.run.model, setup.net
    sampler = SynonymSampler(setup.clip, synonym_names(settings, setup), spec.template,
                             filtered_synonyms(settings, setup))
    teacher, head = None, None
    if settings.kd_weight > 0:
        teacher = clip_from_config(settings.teacher or spec.clip, setup.base_dir, device=str(default_device()))
        teacher.model.eval()  # GKC leaves its RN50 teacher's BatchNorm in train mode (spec §4.1); frozen here
        teacher.model.requires_grad_(False)
        head = TGKDHead(spec.hidden_dim, teacher.embed_dim, len(net.transformer_decoder.embed_proj))
        net.add_module("tgkd", head)
    net.criterion = GKCCriterion(head, settings.kd_weight, void_weight=spec.void_weight, weight_ce=spec.weight_ce,
                                 weight_mask=spec.weight_mask, weight_dice=spec.weight_dice,
                                 num_points=spec.num_points, region_dropout=settings.region_dropout,
                                 weight_syn=settings.syn_weight)

    def segmenter() -> nn.Module:
        if head is not None:
            del net.tgkd
        return net

    ids = setup.dataset.ids if setup.dataset is not None else None
    loss = GKCLoss(settings, setup.text, sampler, teacher, spec.normalization, ids)
    return TrainingParts(net, loss, segmenter)
