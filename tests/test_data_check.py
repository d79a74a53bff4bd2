"""``ovbench data check``: a generated synthetic world passes; a damaged copy fails with each problem named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import save_label
from ovbench.cli import main
from ovbench.prepare import PREPARERS
from ovbench.prepare.base import Preparer
from ovbench.prepare.check import ABSENT, FAIL, OK, check_data, check_protocol, fix_command, foreign_values, spread
from ovbench.protocols import get_protocol, protocol_ids
from ovbench.synth import WorldSizes, generate_world

TINY = WorldSizes(train_images=1, val_images=4, image_size=32, train_videos=0, val_videos=2, video_frames=3,
                  video_size=32, caption_pairs=1, caption_size=32)
SYNTH = ["synth-ov", "synth-ov-video", "synth-ov-video-instance", "synth-ovd"]
VAL = [f"synth_val_{i:06d}" for i in range(4)]
# pycocotools' decode trips numpy 2's __array__ copy-keyword deprecation
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world") / "synth"
    generate_world(root, seed=2, sizes=TINY, progress=False)
    return root


@pytest.fixture
def damaged(world, tmp_path) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(world, copy)
    return copy


def _label(root: Path, image_id: str) -> Path:
    return root / "annotations" / "val" / f"{image_id}.png"


def test_generated_world_is_ok_and_the_real_datasets_absent(world, capsys):
    results = {r.protocol: r for r in check_data([], world, progress=False)}
    assert set(results) == set(protocol_ids())
    assert {pid for pid, r in results.items() if r.status == OK} == set(SYNTH)
    assert all(r.status == ABSENT for pid, r in results.items() if pid not in SYNTH)
    assert results["synth-ov"].summary == "4 label files, 4 images; all checked"
    assert results["synth-ov-video"].summary.startswith("6 label files, 6 images")
    assert results["ade-150"].summary == f"no {world / 'ADEChallengeData2016'}"

    assert main(["data", "check", "--data-root", str(world), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(protocol_ids())
    assert any(line.split()[:2] == ["synth-ovd", "ok"] for line in lines)
    assert any(line.split()[:2] == ["cityscapes-19", "absent"] for line in lines)


def test_damaged_copy_names_every_problem(damaged, capsys):
    _label(damaged, VAL[3]).unlink()                                   # deleted label
    save_label(_label(damaged, VAL[1]), np.full((32, 32), 40, np.uint8))  # out-of-range values (K = 24)
    save_label(_label(damaged, VAL[2]), np.zeros((30, 32), np.uint8))    # wrong size
    (damaged / "images" / "val" / f"{VAL[0]}.png").unlink()            # image of a label, and of synth-ovd
    frame = "synth_val_video_001/00002.png"
    (damaged / "videos" / "val" / "semantic" / frame).unlink()

    assert main(["data", "check", *SYNTH, "--data-root", str(damaged), "--full", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines()[:4]] == [
        ["synth-ov", FAIL], ["synth-ov-video", FAIL], ["synth-ov-video-instance", OK], ["synth-ovd", FAIL]]
    for expected in [
        f"{damaged}/annotations/val: 3 label files, world.json says 4",
        f"{_label(damaged, VAL[3])}: label not found (its image {damaged}/images/val/{VAL[3]}.png is there)",
        f"{damaged}/images/val/{VAL[0]}.png: image not found (its label {_label(damaged, VAL[0])} is there)",
        f"{_label(damaged, VAL[1])}: values outside 0..23 and ignore 255: 40",
        f"{_label(damaged, VAL[2])}: 32x30 px but its image {damaged}/images/val/{VAL[2]}.png is 32x32 px",
        f"{damaged}/videos/val/semantic: 5 label files, world.json says 6",
        f"{damaged}/videos/val/semantic/{frame}: label not found",
        f"fix: ovbench data synth --out {damaged}",
    ]:
        assert expected in out
    synth_ov = check_protocol("synth-ov", damaged, full=True, progress=False)
    assert len(synth_ov.problems) == 5
    ovd = check_protocol("synth-ovd", damaged, full=True, progress=False)
    assert ovd.problems == (f"{damaged}/images/val/{VAL[0]}.png: image not found",)


def test_missing_frame_of_a_track_file(damaged):
    (damaged / "videos" / "val" / "frames" / "synth_val_video_000" / "00001.png").unlink()
    r = check_protocol("synth-ov-video-instance", damaged, full=True, progress=False)
    assert r.problems == (f"{damaged}/videos/val/frames/synth_val_video_000/00001.png: image not found",)


def test_sampling_decodes_a_fixed_number_unless_full(damaged):
    save_label(_label(damaged, VAL[1]), np.full((32, 32), 99, np.uint8))
    sampled = check_protocol("synth-ov", damaged, sample=2, progress=False)      # decodes VAL[0] and VAL[2]
    assert sampled.status == OK and sampled.summary.endswith("2 checked")
    full = check_protocol("synth-ov", damaged, sample=2, full=True, progress=False)
    assert full.status == FAIL and full.problems == (
        f"{_label(damaged, VAL[1])}: values outside 0..23 and ignore 255: 99",)


def test_detection_categories_must_be_the_protocols(damaged):
    path = damaged / "detection" / "instances_val.json"
    d = json.loads(path.read_text())
    d["categories"][0]["name"] = "zebra"
    path.write_text(json.dumps(d))
    r = check_protocol("synth-ovd", damaged, progress=False)
    assert r.status == FAIL and r.summary == "no usable annotation file"
    assert len(r.problems) == 1 and r.problems[0].startswith(f"{path}: category {d['categories'][0]['id']} is 'zebra'")


def test_requested_protocol_without_data_fails_with_the_command(world, capsys):
    assert main(["data", "check", "ade-150", "--data-root", str(world), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["ade-150", FAIL]
    assert f"{world}/ADEChallengeData2016/annotations_detectron2/validation: ground-truth folder of ade-150 not found" \
        in out


def test_real_protocol_counts_and_dataset_class_table(tmp_path):
    voc = get_protocol("pascal-voc-20")
    for i, image_id in enumerate(["2007_000033", "2007_000042"]):
        save_label(voc.layout.label_path(tmp_path, image_id), np.full((5, 4), [i, 255, 3, 19], np.uint8))
        image = voc.layout.image_path(tmp_path, image_id)
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 5)).save(image)
    r = check_protocol("pascal-voc-20", tmp_path, progress=False)
    assert r.problems == (f"{tmp_path}/pascal_voc_d2/annotations_pascal20/validation: 2 label files, "
                          f"protocol pascal-voc-20 has 1449",)

    table = tmp_path / get_protocol("ade-847").class_table["file"]
    table.parent.mkdir(parents=True)
    table.write_text(json.dumps([{"name": f"thing {i}"} for i in range(846)]))
    r = check_protocol("ade-847", tmp_path, progress=False)
    assert r.problems[0] == (f"{table}: 846 classes, protocol ade-847 expects 847; re-run "
                             f"`ovbench data prepare ade20k-full`")
    assert r.fix == f"ovbench data prepare ade20k-full --root {tmp_path}"


def test_the_preparer_listing_a_protocol_is_the_fix(monkeypatch, tmp_path):
    assert fix_command(get_protocol("synth-ovd"), tmp_path) == f"ovbench data synth --out {tmp_path}"
    assert fix_command(get_protocol("ade-150"), tmp_path) == f"ovbench data prepare ade20k --root {tmp_path}"
    fake = Preparer(name="fake-ade", help="", inputs=(), outputs=(), run=lambda root, progress: None,
                    protocols=("ade-150",))
    monkeypatch.setitem(PREPARERS, fake.name, fake)
    assert fix_command(get_protocol("ade-150"), tmp_path) == \
        f"ovbench data prepare ade20k --root {tmp_path} or ovbench data prepare fake-ade --root {tmp_path}"


def test_every_real_protocol_has_a_preparer():
    listed = {pid for preparer in PREPARERS.values() for pid in preparer.protocols}
    assert {pid for pid in protocol_ids() if not pid.startswith("synth-")} <= listed


def test_preparers_list_registered_protocols():
    known = set(protocol_ids())
    for preparer in PREPARERS.values():
        assert set(preparer.protocols) <= known, preparer.name


def test_foreign_values_and_spread():
    assert foreign_values(np.array([[0, 23, 24], [255, 254, 3]], np.uint8), 24, 255).tolist() == [24, 254]
    assert foreign_values(np.array([[0, 846, 65535, 847]], np.uint16), 847, 65535).tolist() == [847]
    assert foreign_values(np.array([[-1, 0, 5]], np.int32), 5, 255).tolist() == [-1, 5]
    assert spread(list("abcdefgh"), 3) == ["a", "c", "f"]
    assert spread(list("abc"), 5) == ["a", "b", "c"] and spread(list("abc"), None) == ["a", "b", "c"]


def test_data_root_must_exist(tmp_path, capsys):
    assert main(["data", "check", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "data root not found" in capsys.readouterr().err


def test_a_root_without_any_protocol_data_fails(tmp_path, capsys):
    assert main(["data", "check", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"no protocol's data folder is below {tmp_path}" in out
    assert all(line.split()[1] == ABSENT for line in out.splitlines()[:len(protocol_ids())])
