"""Ground truth of a video-instance protocol: one YouTube-VIS-format JSON below ``--data-root``.

The file (the protocol's ``layout.labels``) holds ``videos`` (id, length, height, width),
``annotations`` (one per ground-truth track: ``video_id``, ``category_id``, ``segmentations`` with
one compressed RLE or ``null`` per frame, ``iscrowd``) and ``categories``, which must be the
protocol's classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovbench.data.annotation_json import read_annotation_json
from ovbench.data.detection import check_categories
from ovbench.errors import OvbenchError
from ovbench.protocols.schema import Protocol


def preparation_hint(protocol: Protocol) -> str:
    if protocol.id.startswith("synth-"):
        return "run `ovbench data synth --out DIR` and pass --data-root DIR"
    return "run `ovbench data prepare vipseg --root DIR` and pass --data-root DIR"


@dataclass
class VideoInstanceGroundTruth:
    """A protocol's YouTube-VIS annotation file, loaded and checked.

    ``videos`` maps video id to ``(num_frames, height, width)``; ``tracks`` maps video id to its
    annotation dicts.
    """

    protocol: Protocol
    path: Path
    dataset: dict[str, Any] = field(repr=False)
    sha256: str
    videos: dict[int, tuple[int, int, int]] = field(repr=False)
    tracks: dict[int, list[dict[str, Any]]] = field(repr=False)

    @classmethod
    def load(cls, protocol: Protocol, data_root: Path | str) -> "VideoInstanceGroundTruth":
        path = Path(data_root) / protocol.layout.labels
        dataset, digest = read_annotation_json(path, ("videos", "annotations", "categories"),
                                               "track", "YouTube-VIS-format", protocol.id,
                                               preparation_hint(protocol))
        check_categories(protocol, dataset["categories"], path)
        try:
            videos = {int(v["id"]): (int(v["length"]), int(v["height"]), int(v["width"])) for v in dataset["videos"]}
            tracks: dict[int, list[dict[str, Any]]] = {v: [] for v in videos}
            for ann in dataset["annotations"]:
                if len(ann["segmentations"]) != videos[ann["video_id"]][0]:
                    raise ValueError(f"track {ann.get('id')} has {len(ann['segmentations'])} frames, its video "
                                     f"{videos[ann['video_id']][0]}")
                tracks[ann["video_id"]].append(ann)
        except (KeyError, TypeError, ValueError) as e:
            raise OvbenchError(f"{path}: malformed track file ({e!r}); {preparation_hint(protocol)} again") from e
        return cls(protocol=protocol, path=path, dataset=dataset, sha256=digest,
                   videos=videos, tracks=tracks)

    @property
    def category_ids(self) -> set[int]:
        return {int(c["id"]) for c in self.dataset["categories"]}
