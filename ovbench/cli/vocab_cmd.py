"""``ovbench vocab``: WordNet synonym tables (``synonyms``) and their per-segment CLIP filter (``filter-synonyms``)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ovbench.records.store import atomic_write_json
from ovbench.vocab.filter import DEFAULT_THRESHOLD, kept


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vocab", help="vocabulary: WordNet synonym tables and the CLIP synonym filter (GKC)")
    vocab_sub = p.add_subparsers(dest="vocab_command", required=True, metavar="VOCAB_COMMAND")
    s = vocab_sub.add_parser("synonyms", help="write a protocol's synonym table from WordNet 3.0 noun lemmas")
    s.add_argument("--protocol", required=True, help="protocol id (see `ovbench list`)")
    s.add_argument("--out", type=Path, help="table file (default: the built-in ovbench/vocab/tables/ID.json)")
    s.set_defaults(func=run_synonyms)

    f = vocab_sub.add_parser("filter-synonyms",
                             help="CLIP probabilities of each training segment's candidate synonyms")
    f.add_argument("--protocol", required=True, help="semantic-segmentation protocol id")
    f.add_argument("--data-root", required=True, type=Path, help="folder holding the protocol's training split")
    f.add_argument("--clip", required=True, help="open_clip architecture, e.g. ViT-B-32 or tiny-vit")
    f.add_argument("--clip-weights", help="checkpoint file or builtin:NAME (e.g. builtin:tiny-vit-synth); "
                                          "default random weights")
    f.add_argument("--split", default="train", help="training split name swapped into the protocol's layout "
                                                    "(default train; COCO: train2017)")
    f.add_argument("--synonyms", help="synonym table file (default: the protocol's built-in table)")
    f.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"probability a synonym must exceed to be drawn in training (default {DEFAULT_THRESHOLD})")
    f.add_argument("--batch-size", type=int, default=64, help="crops per CLIP forward (default 64)")
    f.add_argument("--device", default="cpu", help="torch device for CLIP (default cpu)")
    f.add_argument("--out", required=True, type=Path, help="JSON file to write")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=run_filter)


def run_synonyms(args: argparse.Namespace) -> int:
    from ovbench.protocols import get_protocol
    from ovbench.vocab.tables import build_table, builtin_table_path, save_table, table_stats

    table = build_table(get_protocol(args.protocol))
    out = args.out or builtin_table_path(args.protocol)
    save_table(table, out)
    st = table_stats(table)
    print(f"{out}: {st['classes']} classes, {st['lemmas']} candidates ({st['mean']} per class, max {st['max']} "
          f"for {st['max_class']}), {len(st['name_only'])} with only their name; {table['source']}")
    return 0


def run_filter(args: argparse.Namespace) -> int:
    from ovbench.models.clip import Clip
    from ovbench.models.zoo import resolve_weights
    from ovbench.protocols import get_protocol
    from ovbench.vocab.filter import filter_synonyms
    from ovbench.vocab.tables import load_table

    protocol = get_protocol(args.protocol)
    table = load_table(args.synonyms or protocol.id)
    clip = Clip(args.clip, pretrained=resolve_weights(args.clip_weights), device=args.device)
    start = time.perf_counter()
    result = filter_synonyms(clip, protocol, args.data_root, table, split=args.split, threshold=args.threshold,
                             batch_size=args.batch_size, progress=not args.no_progress)
    atomic_write_json(args.out, result)
    segments = [probs for seg in result["segments"].values() for probs in seg.values()]
    drawn = sum(len(kept(probs, args.threshold)) for probs in segments)
    print(f"{args.out}: {len(segments)} segments in {len(result['segments'])} images scored in "
          f"{time.perf_counter() - start:.1f} s; {drawn / max(len(segments), 1):.2f} synonyms kept per segment "
          f"(p > {args.threshold}, the name always)")
    return 0
