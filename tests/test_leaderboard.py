"""Leaderboards built from result and speed records written into a temporary root."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from ovbench.errors import OvbenchError
from ovbench.leaderboard import BuildReport, build_leaderboards
from ovbench.leaderboard.columns import TASK_VIEWS
from ovbench.leaderboard.plots import latency_points, pareto_front
from ovbench.leaderboard.select import select_rows, select_speed
from ovbench.protocols import get_protocol
from ovbench.records.store import (load_result_records, load_speed_records, write_result_record,
                                   write_speed_record)

PROTOCOL = get_protocol("synth-ov")
HASH = PROTOCOL.hash
HEADER = ("| method | source | mIoU | mIoU_base | mIoU_novel | hIoU | mIoU_mmseg | pAcc | mAcc "
          "| mIoU 95% CI | stale | citation |")

FULL_METRICS = {"mIoU": 17.54, "mIoU_base": 20.0, "mIoU_novel": 9.25, "hIoU": 12.649,
                "mIoU_mmseg": 17.0, "fwIoU": 30.1234, "pAcc": 60.0, "mAcc": 25.04,
                "IoU": {"0": 1.0, "1": None},
                "ci95": {"mIoU": [16.91, 18.2], "mIoU_novel": [8.0, 10.0], "n_boot": 1000, "seed": 0}}


def result(method: str, source: str, timestamp: str, metrics: dict, *, protocol: str = "synth-ov",
           hash_: str = HASH, **extra) -> dict:
    rec = {"schema": "ovbench.result/1", "source": source, "method": method,
           "protocol": {"id": protocol, "version": 1, "hash": hash_}, "task": "semseg",
           "metrics": metrics, "config": {"prompt": "a photo of a {}."},
           "ovbench": {"version": "0.1.0", "git_commit": "0123abcd", "git_dirty": False},
           "inputs": {"predictions_sha256": "p" * 64, "ground_truth_sha256": "g" * 64, "num_images": 64},
           "timestamp": timestamp, "hardware": {"cpu": "test"}}
    if source == "reported":
        rec["citation"] = {"paper": "GKC, CVPR 2026", "table": "Table 2", "url": "https://example.org/gkc"}
    rec.update(extra)
    return rec


def speed(method: str, dev_class: str, median: float, name: str = "Test device",
          timestamp: str = "2026-11-24T10:00:00.000000Z") -> dict:
    return {"schema": "ovbench.speed/1", "method": method, "device": {"class": dev_class, "name": name},
            "setting": {"input": "128x128", "batch": 1, "precision": "fp32"},
            "latency_ms": {"median": median, "p90": median * 1.1, "mean": median, "std": 0.1},
            "images_per_s": 1000.0 / median, "timestamp": timestamp}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "lb"
    # GKC reproduced twice: the later record wins.
    write_result_record(r, result("GKC (R-101)", "reproduced", "2026-11-23T10:00:00.000000Z", {"mIoU": 10.0}))
    write_result_record(r, result("GKC (R-101)", "reproduced", "2026-11-24T10:00:00.000000Z", FULL_METRICS))
    # GKC as reported in its paper: a separate row, only mIoU.
    write_result_record(r, result("GKC (R-101)", "reported", "2026-11-20T10:00:00.000000Z", {"mIoU": 18.5}))
    # EZSD computed under an older definition of the protocol: stale, but kept.
    write_result_record(r, result("EZSD (ViT-B)", "reproduced", "2026-11-22T10:00:00.000000Z",
                                  {"mIoU": 12.0, "mIoU_base": 15.0, "mIoU_novel": 5.0, "hIoU": None},
                                  hash_="0" * 16))
    return r


def build(root: Path, out: Path, **kw) -> BuildReport:
    return build_leaderboards(root, out, **kw)


def md_lines(out: Path) -> list[str]:
    return (out / "synth-ov.md").read_text().splitlines()


def test_latest_record_per_method_and_source(root: Path, tmp_path: Path) -> None:
    rows = select_rows(load_result_records(root), root)
    assert [(r.method, r.source) for r in rows] == [
        ("EZSD (ViT-B)", "reproduced"), ("GKC (R-101)", "reported"), ("GKC (R-101)", "reproduced")]
    gkc = [r for r in rows if r.source == "reproduced" and r.method == "GKC (R-101)"][0]
    assert gkc.metrics["mIoU"] == 17.54
    assert gkc.timestamp == "2026-11-24T10:00:00.000000Z"

    report = build(root, tmp_path / "out")
    assert report.rows == 3
    df = pd.read_csv(tmp_path / "out" / "synth-ov.csv")
    assert 10.0 not in df["mIoU"].tolist()


def test_old_hash_is_flagged_stale_and_kept(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build(root, out)
    assert report.stale_rows == 1
    assert "EZSD (ViT-B)" in report.stale[0] and "0000000000000000" in report.stale[0]
    assert "1 stale row(s)" in report.summary()
    row = [line for line in md_lines(out) if line.startswith("| EZSD (ViT-B) ")]
    assert row == ["| EZSD (ViT-B) | reproduced | 12.0 | 15.0 | 5.0 | – | – | – | – | – | ⚠ yes | – |"]
    df = pd.read_csv(out / "synth-ov.csv")
    assert df.set_index("method").loc["EZSD (ViT-B)", "stale"] == True  # noqa: E712
    assert df["stale"].sum() == 1
    assert "12.0 ⚠" in (out / "README.md").read_text()


def test_unregistered_protocol_is_stale(tmp_path: Path) -> None:
    root = tmp_path / "lb"
    write_result_record(root, result("Old", "reproduced", "2026-01-01T00:00:00.000000Z", {"mIoU": 5.0},
                                     protocol="gone-v0", hash_="f" * 16))
    out = tmp_path / "out"
    report = build(root, out)
    assert report.stale_rows == 1
    text = (out / "gone-v0.md").read_text()
    assert text.splitlines()[0] == f"# gone-v0 — v1, hash {'f' * 16}, semseg, protocol no longer registered"
    assert "no longer registered" in text and "⚠ yes" in text


def test_markdown_title_header_and_rows(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(root, out)
    lines = md_lines(out)
    assert lines[0] == (f"# synth-ov — v1, hash {HASH}, semseg, "
                        f"{PROTOCOL.num_base} base / {PROTOCOL.num_novel} novel classes")
    assert (PROTOCOL.num_base, PROTOCOL.num_novel) == (17, 7)
    i = lines.index(HEADER)
    assert lines[i + 1] == "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|:---|"
    # Sorted by mIoU, descending; one decimal, halves rounded up; "–" where a metric is missing.
    assert lines[i + 2:i + 5] == [
        "| GKC (R-101) | reported | 18.5 | – | – | – | – | – | – | – | no | GKC, CVPR 2026, Table 2 |",
        "| GKC (R-101) | reproduced | 17.5 | 20.0 | 9.3 | 12.6 | 17.0 | 60.0 | 25.0 | 16.9–18.2 | no | – |",
        "| EZSD (ViT-B) | reproduced | 12.0 | 15.0 | 5.0 | – | – | – | – | – | ⚠ yes | – |",
    ]
    assert lines[i + 5] == ""


def test_missing_values_and_no_ci_column(tmp_path: Path) -> None:
    root = tmp_path / "lb"
    write_result_record(root, result("A", "reproduced", "2026-11-24T10:00:00.000000Z",
                                     {"mIoU": 30.0, "mIoU_base": None, "pAcc": 70.06}))
    write_result_record(root, result("B", "reproduced", "2026-11-24T10:00:00.000000Z", {}))
    out = tmp_path / "out"
    build(root, out)
    lines = md_lines(out)
    header = "| method | source | mIoU | mIoU_base | mIoU_novel | hIoU | mIoU_mmseg | pAcc | mAcc | stale | citation |"
    i = lines.index(header)
    assert lines[i + 2:i + 4] == ["| A | reproduced | 30.0 | – | – | – | – | 70.1 | – | no | – |",
                                  "| B | reproduced | – | – | – | – | – | – | – | no | – |"]
    assert "95% CI" not in "\n".join(lines)


def test_csv_round_trip(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(root, out)
    df = pd.read_csv(out / "synth-ov.csv")
    assert df["method"].tolist() == ["GKC (R-101)", "GKC (R-101)", "EZSD (ViT-B)"]
    assert df["source"].tolist() == ["reported", "reproduced", "reproduced"]
    rep = df[df["source"] == "reproduced"].set_index("method").loc["GKC (R-101)"]
    for key in ("mIoU", "mIoU_base", "mIoU_novel", "hIoU", "mIoU_mmseg", "pAcc", "mAcc", "fwIoU"):
        assert rep[key] == FULL_METRICS[key]                      # full precision
    assert (rep["ci95.mIoU.lo"], rep["ci95.mIoU.hi"]) == (16.91, 18.2)
    assert rep["timestamp"] == "2026-11-24T10:00:00.000000Z"
    assert rep["git_commit"] == "0123abcd"
    assert (root / rep["record"]).is_file()                       # path relative to the root
    assert pd.isna(df.set_index("source").loc["reported", "mIoU_base"])
    assert df.set_index("source").loc["reported", "citation"] == "GKC, CVPR 2026, Table 2"


def test_latex_and_html_contain_methods(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(root, out)
    tex = (out / "synth-ov.tex").read_text()
    html = (out / "synth-ov.html").read_text()
    for text in (tex, html):
        assert "GKC (R-101)" in text and "EZSD (ViT-B)" in text
    assert "\\begin{tabular}" in tex and "mIoU\\_base" in tex and "16.9--18.2" in tex
    assert "95\\% CI" in tex and "⚠" not in tex
    assert html.startswith("<!DOCTYPE html>") and "<table" in html and "16.9–18.2" in html


def test_base_novel_scatter_is_png(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build(root, out)
    png = out / "plots" / "synth-ov__base-novel.png"
    assert png in report.plots
    with Image.open(png) as im:
        assert im.format == "PNG"
        im.verify()
    assert "plots/synth-ov__base-novel.png" in (out / "synth-ov.md").read_text()


def test_no_scatter_without_base_and_novel(tmp_path: Path) -> None:
    root = tmp_path / "lb"
    write_result_record(root, result("A", "reported", "2026-11-24T10:00:00.000000Z", {"mIoU": 30.0}))
    report = build(root, tmp_path / "out")
    assert report.plots == []
    assert not (tmp_path / "out" / "plots").exists()


def test_latency_plot_only_with_speed_records(root: Path, tmp_path: Path) -> None:
    report = build(root, tmp_path / "out")
    assert not [p for p in report.plots if "latency" in p.name]


def test_latency_plots_per_device_class_never_mixed(root: Path, tmp_path: Path) -> None:
    write_speed_record(root, speed("GKC (R-101)", "cpu", 120.0, "Xeon"))
    write_speed_record(root, speed("EZSD (ViT-B)", "cpu", 5.0, "Xeon"))
    write_speed_record(root, speed("GKC (R-101)", "cuda", 3.0, "H100"))
    write_speed_record(root, speed("GKC (R-101)", "cuda", 999.0, "H100", timestamp="2026-01-01T00:00:00Z"))
    write_speed_record(root, speed("Unscored", "cuda", 1.0, "H100"))      # no result record: not joined
    out = tmp_path / "out"
    report = build(root, out)
    names = sorted(p.name for p in report.plots if "latency" in p.name)
    assert names == ["synth-ov__latency-cpu.png", "synth-ov__latency-cuda.png"]
    for p in report.plots:
        with Image.open(p) as im:
            assert im.format == "PNG"

    rows = select_rows(load_result_records(root), root)
    speeds = select_speed(load_speed_records(root))
    view = TASK_VIEWS["semseg"]
    cpu = latency_points(rows, speeds, view, "cpu")
    cuda = latency_points(rows, speeds, view, "cuda")
    assert all(s["device"]["class"] == "cpu" for *_, s in cpu)
    assert all(s["device"]["class"] == "cuda" for *_, s in cuda)
    assert sorted((r.method, x, y) for x, y, r, _ in cpu) == [("EZSD (ViT-B)", 5.0, 12.0),
                                                              ("GKC (R-101)", 120.0, 17.54)]
    # Latest cuda record, joined to the reproduced row (not the reported one).
    assert [(r.method, r.source, x) for x, _, r, _ in cuda] == [("GKC (R-101)", "reproduced", 3.0)]


def test_pareto_front() -> None:
    pts = [(10.0, 50.0), (5.0, 40.0), (20.0, 45.0), (5.0, 30.0), (40.0, 60.0)]
    assert pareto_front(pts) == [1, 0, 4]


def test_index_lists_protocols_and_overview(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(root, out)
    readme = (out / "README.md").read_text().splitlines()
    assert any(line.startswith("- [synth-ov](synth-ov.md) — semseg, v1") for line in readme)
    i = readme.index("| method [source] | synth-ov |")
    assert readme[i + 2:i + 5] == ["| EZSD (ViT-B) [reproduced] | 12.0 ⚠ |",
                                   "| GKC (R-101) [reported] | 18.5 |",
                                   "| GKC (R-101) [reproduced] | 17.5 |"]


def test_deterministic_output(root: Path, tmp_path: Path) -> None:
    write_speed_record(root, speed("GKC (R-101)", "cpu", 120.0))
    a, b = tmp_path / "a", tmp_path / "b"
    build(root, a)
    first = (a / "synth-ov.md").read_bytes()
    build(root, a)
    build(root, b)
    assert (a / "synth-ov.md").read_bytes() == first == (b / "synth-ov.md").read_bytes()
    for rel in ("synth-ov.csv", "synth-ov.tex", "synth-ov.html", "README.md",
                "plots/synth-ov__base-novel.png", "plots/synth-ov__latency-cpu.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_protocol_filter(root: Path, tmp_path: Path) -> None:
    write_result_record(root, result("Old", "reproduced", "2026-01-01T00:00:00.000000Z", {"mIoU": 5.0},
                                     protocol="gone-v0", hash_="f" * 16))
    out = tmp_path / "out"
    report = build(root, out, protocol="synth-ov")
    assert report.protocols == ["synth-ov"] and report.index is None
    assert (out / "synth-ov.md").is_file()
    assert not (out / "gone-v0.md").exists() and not (out / "README.md").exists()
    with pytest.raises(OvbenchError, match="no result records for protocol 'ade-150'.*gone-v0, synth-ov"):
        build(root, out, protocol="ade-150")


def test_missing_results_folder(tmp_path: Path) -> None:
    with pytest.raises(OvbenchError, match="no results/ folder"):
        build(tmp_path / "nothing-here", tmp_path / "out")


def test_empty_results_folder_writes_index(tmp_path: Path) -> None:
    (tmp_path / "lb" / "results").mkdir(parents=True)
    report = build(tmp_path / "lb", tmp_path / "out")
    assert report.rows == 0 and report.protocols == []
    assert "No result records yet." in (tmp_path / "out" / "README.md").read_text()


def test_dataset_class_table_protocol_is_unverified_without_data_root(tmp_path: Path, monkeypatch) -> None:
    from ovbench.leaderboard import select
    from ovbench.protocols.schema import protocol_from_dict

    big = protocol_from_dict({
        "id": "big-847", "version": 1, "task": "semseg", "dataset": "x", "split": "val",
        "layout": {"images": "i/{id}.jpg", "labels": "l/{id}.png"}, "ignore_label": 65535,
        "metrics": ["mIoU"], "class_table": {"source": "dataset", "num_classes": 847,
                                             "file": "classes.json", "written_by": "ovbench data prepare"}})
    real = select.get_protocol
    monkeypatch.setattr(select, "get_protocol",
                        lambda pid, data_root=None: big if pid == "big-847" else real(pid, data_root))
    root = tmp_path / "lb"
    write_result_record(root, result("A", "reproduced", "2026-11-24T10:00:00.000000Z", {"mIoU": 9.0},
                                     protocol="big-847", hash_="a" * 16))
    # a reported number, made without the dataset, carries the declaration's hash: current
    write_result_record(root, result("P", "reported", "2026-11-24T10:00:00.000000Z", {"mIoU": 3.0},
                                     protocol="big-847", hash_=big.hash))
    out = tmp_path / "out"
    report = build(root, out)
    assert (report.stale_rows, report.unverified_rows) == (0, 1)
    text = (out / "big-847.md").read_text()
    assert text.splitlines()[0].endswith("847 classes (class table and partition read from the dataset)")
    assert "| A | reproduced | 9.0 | – | – | – | – | – | – | ? unverified | – |" in text


def test_task_without_a_view_gets_every_scalar_metric(tmp_path: Path) -> None:
    root = tmp_path / "lb"
    rec = result("Det", "reproduced", "2026-11-24T10:00:00.000000Z",
                 {"bbox": {"AP50_novel@100": 31.25, "AP": 40.0, "per_class": {"0": 1.0}}},
                 protocol="ov-coco-future", hash_="b" * 16)
    rec["task"] = "detection"
    write_result_record(root, rec)
    out = tmp_path / "out"
    build(root, out)
    lines = (out / "ov-coco-future.md").read_text().splitlines()
    assert "| method | source | bbox.AP | bbox.AP50_novel@100 | stale | citation |" in lines
    assert "| Det | reproduced | 40.0 | 31.3 | ⚠ yes | – |" in lines


def test_speed_columns_join_reproduced_rows_by_method():
    import pandas as pd

    from ovbench.leaderboard.frames import add_speed
    full = pd.DataFrame({"method": ["a", "a", "b"], "source": ["reproduced", "reported", "reproduced"]})
    speeds = [{"method": "a", "device": {"class": "cpu"}, "latency_ms": {"median": 20.0}},
              {"method": "a", "device": {"class": "H100"}, "latency_ms": {"median": 2.0}},
              {"method": "c", "device": {"class": "H200"}, "latency_ms": {"median": 1.0}}]
    out = add_speed(full, speeds)
    assert list(out.columns) == ["method", "source", "latency_ms.H100", "images_per_s.H100", "latency_ms.cpu",
                                 "images_per_s.cpu"]
    assert out["images_per_s.cpu"].tolist()[0] == 50.0 and out["images_per_s.H100"].tolist()[0] == 500.0
    assert out["latency_ms.cpu"].tolist()[0] == 20.0 and out["latency_ms.H100"].tolist()[0] == 2.0
    assert out["images_per_s.cpu"].isna().tolist() == [False, True, True]
    assert "images_per_s.cpu" not in full.columns


def test_study_records_get_their_own_mean_std_table(tmp_path):
    def study_record(variant: str, seed: int, miou: float, order: int) -> dict:
        rec = result(f"{variant}/seed{seed}", "reproduced", f"2026-11-23T10:00:0{seed}Z",
                     {"mIoU": miou, "mIoU_base": miou + 10, "mIoU_novel": miou - 10, "hIoU": miou / 2})
        rec["config"] = {"study": {"name": "abl", "variant": variant, "seed": seed, "order": order},
                         "images_per_s": 10.0 * (seed + 1), "train_seconds": 100.0 + 20 * seed}
        return rec

    for seed, miou in enumerate((40.0, 42.0, 47.0)):
        write_result_record(tmp_path, study_record("gkc", seed, miou, 1))
    write_result_record(tmp_path, study_record("naive", 0, 30.0, 0))
    write_result_record(tmp_path, result("plain", "reproduced", "2026-11-23T10:00:00Z",
                                         {"mIoU": 50.0, "mIoU_base": 60.0, "mIoU_novel": 5.0, "hIoU": 9.0}))
    build_leaderboards(tmp_path, tmp_path / "tables")
    main_md = (tmp_path / "tables" / "synth-ov.md").read_text()
    assert "| plain |" in main_md and "gkc/seed" not in main_md
    study = pd.read_csv(tmp_path / "tables" / "synth-ov__abl.csv")
    assert study["variant"].tolist() == ["naive", "gkc"] and study["seeds"].tolist() == [1, 3]
    gkc = study.iloc[1]
    assert gkc["mIoU.mean"] == pytest.approx(43.0) and gkc["mIoU.std"] == pytest.approx(3.605551, abs=1e-6)
    assert gkc["images_per_s.mean"] == pytest.approx(20.0) and study.iloc[0]["mIoU.std"] == 0.0
    assert gkc["train_seconds.mean"] == pytest.approx(120.0) and gkc["train_seconds.std"] == pytest.approx(20.0)
    page = (tmp_path / "tables" / "synth-ov__abl.md").read_text()
    assert "| gkc | 3 | 43.0 ± 3.6 | 53.0 ± 3.6 | 33.0 ± 3.6 | 21.5 ± 1.8 |" in page
    assert "| 20.0 | 120 ± 20 |" in page
