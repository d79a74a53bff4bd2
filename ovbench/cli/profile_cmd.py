"""``ovbench profile MODEL [--vs BASELINE]``: the standard speed card (see :mod:`ovbench.profiling`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ovbench.errors import OvbenchError

DEFAULT_ROOT = Path("leaderboards")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure inference latency, memory, FLOPs and parameters (a speed record)")
    p.add_argument("model", nargs="?", help="named config (--list), run/model config, model.pt, or module:factory")
    p.add_argument("--vs", metavar="BASELINE", help="a second model, timed interleaved in the same process; the "
                                                    "record reports speedup = baseline latency / model latency")
    p.add_argument("--list", action="store_true", help="list the named configs and exit")
    p.add_argument("--input", action="append", metavar="HxW", help="input size in pixels, e.g. 640x640 or "
                                                                   "800x1216 (repeatable; default 640x640)")
    p.add_argument("--vocab", action="append", type=int, metavar="K",
                   help="vocabulary size (repeatable, e.g. 20 59 150 847 1203; default 150)")
    p.add_argument("--protocol", help="use this protocol's class names as the vocabulary instead of --vocab")
    p.add_argument("--batch", type=int, default=1, help="images per forward (default 1)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16", "fp16"),
                   help="fp32 (TF32 off), tf32 (CUDA), or bf16/fp16 autocast (default fp32)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format for images and modules")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cuda or cpu (default: cuda when present)")
    p.add_argument("--measure", choices=("model-only", "end-to-end", "both"), default="both",
                   help="model-only (forward on pre-loaded tensors), end-to-end (PNG decode to label map), or both")
    p.add_argument("--weights", choices=("random", "configured"), default="random",
                   help="random weights (default; speed does not depend on them) or the config's own files")
    p.add_argument("--name", help="record name of MODEL (default: the model's own)")
    p.add_argument("--vs-name", help="record name of BASELINE")
    p.add_argument("--iterations", type=int, default=100, help="timed calls per repeat (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="repeat windows (default 3)")
    p.add_argument("--warmup", type=int, default=10, help="minimum warm-up calls before the stability check (default 10)")
    p.add_argument("--no-flops", action="store_true", help="skip FLOP counting")
    p.add_argument("--mask-sweep", type=int, nargs="+", default=[1, 10, 25, 50, 100], metavar="N",
                   help="proposal counts for the two-stage latency-vs-masks sweep (default 1 10 25 50 100)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                   help="leaderboard root; the records go to <root>/speed (default: leaderboards)")
    p.add_argument("--no-record", action="store_true", help="print only, write no record")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def run(args: argparse.Namespace) -> int:
    from ovbench.models.zoo import named_configs
    from ovbench.profiling import ProfileOptions, format_report, parse_input_size, profile, resolve_target
    from ovbench.protocols import get_protocol
    from ovbench.records.store import write_speed_record

    if args.list:
        for name, path in named_configs().items():
            print(f"{name:40s} {path}")
        return 0
    if not args.model:
        raise OvbenchError("give MODEL (a named config, see `ovbench profile --list`, a config, a model.pt or "
                           "module:factory)")
    if args.device.startswith("cuda") and not _cuda():
        raise OvbenchError("--device cuda: no CUDA device here; use --device cpu")
    if args.iterations < 1 or args.repeats < 1 or args.warmup < 0:
        raise OvbenchError("--iterations and --repeats must be >= 1 and --warmup >= 0")
    class_names = None
    if args.protocol:
        protocol = get_protocol(args.protocol)
        class_names = [[c.name] for c in protocol.classes]
    options = ProfileOptions(
        inputs=[parse_input_size(s) for s in (args.input or ["640x640"])], vocabs=args.vocab or [150],
        class_names=class_names, batch=args.batch, precision=args.precision, channels_last=args.channels_last,
        compile=args.compile, device=args.device,
        measured=("model-only", "end-to-end") if args.measure == "both" else (args.measure,),
        iterations=args.iterations, repeats=args.repeats, warmup=args.warmup, flops=not args.no_flops,
        mask_sweep=args.mask_sweep)
    targets = [resolve_target(args.model, args.weights, args.name)]
    if args.vs:
        targets.append(resolve_target(args.vs, args.weights, args.vs_name))
        if targets[1].name == targets[0].name:
            raise OvbenchError(f"MODEL and BASELINE are both named {targets[0].name!r}; tell them apart with "
                               f"--name / --vs-name")
    records = profile(targets, options, progress=not args.no_progress)
    print(format_report(records))
    if not args.no_record:
        for record in records:
            print(f"speed record: {write_speed_record(args.root, record)}")
    return 0
