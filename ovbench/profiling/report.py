"""Plain-text speed card of ``ovbench profile``'s records: one line per measurement, then the
parameters, text-encoder cost, mask sweep and speedups."""
from __future__ import annotations

from typing import Any, Mapping, Sequence


def _mib(memory: Mapping[str, float] | None) -> str:
    return f"{memory['allocated']:.0f}/{memory['reserved']:.0f}" if memory else "-"


def _gflops(flops: Mapping[str, Any] | None) -> str:
    return f"{flops['gflops']:.2f}" if flops else "-"


def format_report(records: Sequence[Mapping[str, Any]]) -> str:
    """The card of every record (see the module docstring)."""
    lines = []
    first = records[0]
    env = first["environment"]
    lines.append(f"device: {env['device']} ({env['device_class']}); torch {env['torch']}, CUDA {env['cuda']}, "
                 f"cuDNN {env['cudnn']}, {env['torch_threads']} threads; {first['protocol']['timer']}")
    header = (f"{'model':22s} {'setting':52s} {'median ms':>10s} {'p90 ms':>9s} {'cv rep.':>8s} {'img/s':>8s} "
              f"{'GFLOPs/img':>10s} {'mem MiB':>11s} {'CLIP fwd/img':>12s}")
    lines += [header, "-" * len(header)]
    for rec in records:
        for m in rec["measurements"]:
            lat = m["latency_ms"]
            forwards = m.get("clip_image_forwards_per_image")
            lines.append(f"{rec['method'][:22]:22s} {m['label'][:52]:52s} {lat['median']:10.2f} {lat['p90']:9.2f} "
                         f"{100 * lat['cv_repeats']:7.2f}% {m['images_per_s']:8.2f} "
                         f"{_gflops(m.get('flops_per_image')):>10s} {_mib(m.get('memory_mib')):>11s} "
                         f"{'-' if forwards is None else f'{forwards:.1f}':>12s}")
    for rec in records:
        p = rec["params"]
        lines.append(f"{rec['method']}: params {p['image'] / 1e6:.2f} M image + {p['text'] / 1e6:.2f} M text")
        for m in rec["measurements"]:
            if not m["latency_ms"].get("warmup_stable", True):
                lines.append(f"  warm-up hit its cap before stabilising ({m['latency_ms']['warmup_calls']} calls): "
                             f"{m['label']}")
        for t in rec["text_encoder"]:
            lines.append(f"  text encoder, K={t['vocab']}: {t['uncached_ms']:.1f} ms uncached, "
                         f"{t['cached_ms']:.2f} ms cached")
        uncounted = sorted({op for m in rec["measurements"] for op in ((m.get("flops_per_image") or {})
                                                                       .get("uncounted_ops") or {})})
        if uncounted:
            lines.append(f"  ops FlopCounterMode did not count: {', '.join(uncounted)}")
        for s in rec.get("mask_sweep") or []:
            lines.append(f"  max_proposals {s['max_proposals']:4d}: {s['clip_image_forwards_per_image']:.1f} CLIP "
                         f"forwards/img, {s['median_ms']:.2f} ms")
        for c in rec.get("comparison") or []:
            lines.append(f"  speedup vs {c['baseline']} [{c['setting']['input']} K={c['setting']['vocab']} "
                         f"{c['setting']['precision']} {c['setting']['measured']}]: {c['speedup']:.2f}x "
                         f"(per repeat {c['min']:.2f}-{c['max']:.2f})")
    return "\n".join(lines)
