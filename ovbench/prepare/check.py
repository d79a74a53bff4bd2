"""``ovbench data check``: are the prepared files a protocol reads there, and sane?

Per protocol, below the data root:

- a class table read from the dataset (ADE-847, PC-459, LVIS) is there and has the protocol's size;
- label-map protocols (semseg, video semseg): the label files the evaluation finds
  (:class:`~ovbench.data.semseg.SemsegGroundTruth`) are as many as expected (:func:`expected_count`;
  when some are missing, the images without a label are named), each has its image, and a sample of
  them (every one with ``full``) decodes to values in ``0..K-1`` or the ignore label at its image's size;
- detection and video-instance protocols: the annotation JSON loads with the readers the evaluation
  uses (categories equal to the protocol's classes), holds the expected number of images (videos),
  and a sample of the image files it names (every one with ``full``) exists at the recorded size.

Every problem names the file at fault; :func:`fix_command` is the command that writes the
protocol's files (``ovbench data synth`` or the preparer whose ``protocols`` lists it).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovbench.data.detection import DetectionGroundTruth
from ovbench.data.detection_training import image_path
from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.data.semseg import SemsegGroundTruth
from ovbench.data.video_instance import VideoInstanceGroundTruth
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare import PREPARERS
from ovbench.protocols import Layout, Protocol, get_protocol, protocol_ids
from ovbench.protocols.schema import LABEL_MAP_TASKS
from ovbench.synth import read_world

#: Files (labels, or images named by an annotation file) decoded per protocol without ``full``.
SAMPLE = 50
OK, FAIL, ABSENT = "ok", "FAIL", "absent"
#: What a synthetic protocol's ground truth counts, as a key of ``world.json``'s ``counts``.
SYNTH_COUNTS = {"semseg": "images", "detection": "images", "video-semseg": "video_frames",
                "video-instance": "videos"}
T = TypeVar("T")
#: An image file and the (height, width) in pixels its annotation gives it.
ImageEntry = tuple[Path, tuple[int, int]]


@dataclass(frozen=True)
class ProtocolCheck:
    """The outcome for one protocol.

    ``status`` is ``"ok"``, ``"FAIL"`` (``problems`` says why, one line per problem, each naming a
    file) or ``"absent"`` (its data folder is not below the data root; nothing was checked).
    ``summary`` says what was looked at; ``fix`` is the command that writes the protocol's files.
    """

    protocol: str
    status: str
    summary: str
    problems: tuple[str, ...]
    fix: str


def data_folder(protocol: Protocol, data_root: Path) -> Path:
    """The dataset's folder below ``data_root``: the first component of the protocol's label path."""
    return data_root / Path(protocol.layout.labels).parts[0]


def fix_command(protocol: Protocol, data_root: Path) -> str:
    """The command that writes ``protocol``'s files below ``data_root``."""
    if protocol.id.startswith("synth-"):
        return f"ovbench data synth --out {data_root}"
    names = sorted(p.name for p in PREPARERS.values() if protocol.id in p.protocols)
    if names:
        return " or ".join(f"ovbench data prepare {n} --root {data_root}" for n in names)
    written_by = protocol.class_table.get("written_by")
    if written_by:
        return f"{written_by} --root {data_root}"
    return (f"no preparer lists {protocol.id}; `ovbench data prepare --help` lists the datasets ovbench prepares "
            f"(otherwise follow the protocol's layout: `ovbench list --protocol {protocol.id} --json`)")


def expected_count(protocol: Protocol, data_root: Path) -> tuple[int, str] | None:
    """How many images (frames for video semseg, videos for video instances) the ground truth should
    hold, and who says so: the protocol's ``num_images``, or a synthetic world's ``world.json``."""
    if protocol.definition.get("num_images") is not None:
        return int(protocol.definition["num_images"]), f"protocol {protocol.id} has"
    world = read_world(data_root) if protocol.id.startswith("synth-") else None
    if world is None:
        return None
    return int(world["counts"][SYNTH_COUNTS[protocol.task]][protocol.split]), "world.json says"


def spread(items: Sequence[T], count: int | None) -> list[T]:
    """``count`` items evenly spaced over ``items`` (always the first); all of them when ``count`` is ``None``."""
    if count is None or count >= len(items):
        return list(items)
    return [items[i] for i in (np.arange(count) * len(items)) // count]


def foreign_values(labels: np.ndarray, num_classes: int, ignore_label: int) -> np.ndarray:
    """The distinct values of ``labels`` (shape ``(H, W)``), sorted, that are neither a class id
    ``0..num_classes-1`` nor ``ignore_label``."""
    flat = labels.ravel()
    # a bincount is much faster than a sort for the unsigned maps (uint8 / uint16) labels come as
    values = np.flatnonzero(np.bincount(flat)) if flat.dtype.kind == "u" else np.unique(flat)
    return values[((values < 0) | (values >= num_classes)) & (values != ignore_label)]


def image_size(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """``((height, width), None)`` from an image file's header, or ``(None, problem)`` when it is
    missing or unreadable."""
    if not path.is_file():
        return None, f"{path}: image not found"
    try:
        with Image.open(path) as im:
            return (im.height, im.width), None
    except (OSError, ValueError) as e:
        return None, f"{path}: unreadable image ({e})"


def _values_text(values: np.ndarray, shown: int = 8) -> str:
    text = ", ".join(str(int(v)) for v in values[:shown])
    return text + (f", ... ({len(values)} values)" if len(values) > shown else "")


def check_label_file(protocol: Protocol, label: Path, image: Path) -> list[str]:
    """Problems of one label map: unreadable, values outside the classes and ignore label, size unlike its image's."""
    try:
        labels, _ = decode_label_map(label.read_bytes())
    except (OSError, LabelDecodeError) as e:
        return [f"{label}: unreadable label map ({e})"]
    problems = []
    bad = foreign_values(labels, protocol.num_classes, int(protocol.ignore_label))
    if bad.size:
        problems.append(f"{label}: values outside 0..{protocol.num_classes - 1} and ignore {protocol.ignore_label}: "
                        f"{_values_text(bad)}")
    if image.is_file():                     # a missing image is reported with the file count
        size, problem = image_size(image)
        if problem:
            problems.append(problem)
        elif size != labels.shape:
            problems.append(f"{label}: {labels.shape[1]}x{labels.shape[0]} px but its image {image} is "
                            f"{size[1]}x{size[0]} px")
    return problems


def _error_lines(e: OvbenchError) -> list[str]:
    if isinstance(e, ValidationError):
        return [f"{e.what}: {p}" for p in e.problems]
    return [str(e)]


def _count_problem(what: str, where: Path, found: int, expected: tuple[int, str] | None) -> list[str]:
    if expected is None or found == expected[0]:
        return []
    return [f"{where}: {found} {what}, {expected[1]} {expected[0]}"]


def images_without_labels(gt: SemsegGroundTruth, label_ids: Sequence[str]) -> list[str]:
    """Ids of the image files (found as the label files are) that have no label file; none when
    the image folder is missing."""
    images = SemsegGroundTruth(replace(gt.protocol, layout=Layout(gt.protocol.layout.images,
                                                                   gt.protocol.layout.images)), gt.data_root)
    try:
        return sorted(set(images.ids()) - set(label_ids))
    except OvbenchError:
        return []


def _checked(sampled: int, total: int) -> str:
    return "all checked" if sampled == total else f"{sampled} checked"


def _progress(items: Iterable[T], total: int, protocol: Protocol, unit: str, progress: bool) -> Iterable[T]:
    return tqdm(items, total=total, desc=f"check {protocol.id}", unit=unit, disable=not progress, leave=False)


def check_label_maps(protocol: Protocol, data_root: Path, sample: int | None,
                     progress: bool) -> tuple[str, list[str]]:
    """Summary and problems of a semseg / video-semseg protocol's label files (``sample=None``: all)."""
    gt = SemsegGroundTruth(protocol, data_root)
    try:
        ids = gt.ids()
    except OvbenchError as e:
        return "no label files", _error_lines(e)
    expected = expected_count(protocol, data_root)
    problems = _count_problem("label files", gt.folder, len(ids), expected)
    if expected is not None and len(ids) < expected[0]:
        problems += [f"{gt.label_path(i)}: label not found (its image {gt.image_path(i)} is there)"
                     for i in images_without_labels(gt, ids)]
    missing = [i for i in ids if not gt.image_path(i).is_file()]
    problems += [f"{gt.image_path(i)}: image not found (its label {gt.label_path(i)} is there)" for i in missing]
    chosen = spread(ids, sample)
    for image_id in _progress(chosen, len(chosen), protocol, "label", progress):
        problems += check_label_file(protocol, gt.label_path(image_id), gt.image_path(image_id))
    return f"{len(ids)} label files, {len(ids) - len(missing)} images; {_checked(len(chosen), len(ids))}", problems


def _check_images(protocol: Protocol, entries: Sequence[ImageEntry], sample: int | None,
                  progress: bool) -> tuple[int, list[str]]:
    """How many of ``entries`` were sampled, and problems: files missing, unreadable or of another size."""
    chosen = spread(entries, sample)
    problems: list[str] = []
    for path, expected in _progress(chosen, len(chosen), protocol, "image", progress):
        size, problem = image_size(path)
        if problem:
            problems.append(problem)
        elif size != expected:
            problems.append(f"{path}: {size[1]}x{size[0]} px, the annotation file says {expected[1]}x{expected[0]}")
    return len(chosen), problems


def check_detection(protocol: Protocol, data_root: Path, sample: int | None, progress: bool) -> tuple[str, list[str]]:
    """Summary and problems of a detection protocol's annotation file and the images it names."""
    try:
        gt = DetectionGroundTruth.load(protocol, data_root)
        entries = [(image_path(protocol.layout.images, data_root, im), (int(im["height"]), int(im["width"])))
                   for im in gt.dataset["images"]]
    except OvbenchError as e:
        return "no usable annotation file", _error_lines(e)
    problems = _count_problem("images", gt.path, len(entries), expected_count(protocol, data_root))
    checked, image_problems = _check_images(protocol, entries, sample, progress)
    return (f"{len(entries)} images, {len(gt.dataset['annotations'])} annotations; "
            f"image files {_checked(checked, len(entries))}"), problems + image_problems


def _frames(protocol: Protocol, data_root: Path,
            videos: Sequence[dict[str, Any]]) -> tuple[list[ImageEntry], list[str]]:
    """The frame files the videos name, and problems with their lists."""
    entries: list[ImageEntry] = []
    problems: list[str] = []
    for v in videos:
        names = v.get("file_names")
        if not isinstance(names, list) or len(names) != int(v["length"]):
            problems.append(f"video {v['id']} ({v.get('name', '?')}): 'file_names' must list its {v['length']} "
                            f"frames, found {len(names) if isinstance(names, list) else 'none'}")
            continue
        entries += [(image_path(protocol.layout.images, data_root, {"file_name": n, "id": v["id"]}),
                     (int(v["height"]), int(v["width"]))) for n in names]
    return entries, problems


def check_video_instances(protocol: Protocol, data_root: Path, sample: int | None,
                          progress: bool) -> tuple[str, list[str]]:
    """Summary and problems of a video-instance protocol's track file and the frames it names."""
    try:
        gt = VideoInstanceGroundTruth.load(protocol, data_root)
    except OvbenchError as e:
        return "no usable track file", _error_lines(e)
    entries, problems = _frames(protocol, data_root, gt.dataset["videos"])
    problems = _count_problem("videos", gt.path, len(gt.videos), expected_count(protocol, data_root)) + [
        f"{gt.path}: {p}" for p in problems]
    checked, image_problems = _check_images(protocol, entries, sample, progress)
    return (f"{len(gt.videos)} videos, {len(entries)} frames, {len(gt.dataset['annotations'])} tracks; "
            f"frame files {_checked(checked, len(entries))}"), problems + image_problems


def check_protocol(protocol_id: str, data_root: Path | str, full: bool = False, sample: int = SAMPLE,
                   progress: bool = True) -> ProtocolCheck:
    """Check one protocol's files below ``data_root``; decode ``sample`` files, or all with ``full``."""
    data_root = Path(data_root)
    protocol = get_protocol(protocol_id)
    fix = fix_command(protocol, data_root)
    problems: list[str] = []
    if protocol.classes is None:
        try:
            protocol = get_protocol(protocol_id, data_root)
        except OvbenchError as e:
            problems.append(str(e))
    count = None if full else sample
    if protocol.task in LABEL_MAP_TASKS:
        summary, found = check_label_maps(protocol, data_root, count, progress)
    elif protocol.classes is None:      # the annotation files cannot be matched against a missing class table
        summary, found = "annotation file not checked without the class table", []
    elif protocol.task == "detection":
        summary, found = check_detection(protocol, data_root, count, progress)
    else:
        summary, found = check_video_instances(protocol, data_root, count, progress)
    problems += found
    return ProtocolCheck(protocol_id, FAIL if problems else OK, summary, tuple(problems), fix)


def check_data(protocols: Sequence[str], data_root: Path | str, full: bool = False, sample: int = SAMPLE,
               progress: bool = True) -> list[ProtocolCheck]:
    """Check ``protocols``; with none given, every protocol whose data folder is below ``data_root``
    (the others come back ``"absent"``, unchecked)."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise OvbenchError(f"{data_root}: data root not found; pass the folder given to `ovbench data prepare "
                           f"--root` or `ovbench data synth --out`")
    results = []
    for pid in protocols or protocol_ids():
        protocol = get_protocol(pid)
        if not protocols and not data_folder(protocol, data_root).is_dir():
            results.append(ProtocolCheck(pid, ABSENT, f"no {data_folder(protocol, data_root)}", (),
                                         fix_command(protocol, data_root)))
            continue
        results.append(check_protocol(pid, data_root, full, sample, progress))
    return results
