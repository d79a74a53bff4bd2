"""The ``ovbench`` command line: one entry point, one sub-command per job.

Every sub-command module exposes ``register(subparsers)``. Errors a user can fix arrive as
:class:`~ovbench.errors.OvbenchError` and leave as one message on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

import ovbench
from ovbench.cli import (audit_cmd, benchmark_cmd, compare_cmd, data_cmd, davis_cmd, demo_cmd, evaluate_cmd,
                         leaderboard_cmd, list_cmd, predict_cmd, profile_cmd, train_cmd, vocab_cmd)
from ovbench.errors import OvbenchError

COMMANDS = (list_cmd, evaluate_cmd, davis_cmd, compare_cmd, leaderboard_cmd, data_cmd, train_cmd, predict_cmd,
            benchmark_cmd, profile_cmd, demo_cmd, vocab_cmd, audit_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovbench", description=ovbench.__doc__)
    parser.add_argument("--version", action="version", version=f"ovbench {ovbench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OvbenchError as e:
        print(f"ovbench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0


def run_script(script_main: Callable[[Sequence[str] | None], int], prog: str,
               argv: Sequence[str] | None = None) -> int:
    """Run a ``python -m ...`` runner's ``main`` (methods, baselines) the way ``ovbench`` runs its
    commands: an :class:`OvbenchError` becomes one line on stderr and exit code 2. Use as
    ``raise SystemExit(run_script(main, "python -m methods.x"))`` under ``if __name__ == "__main__"``."""
    try:
        return int(script_main(argv) or 0)
    except OvbenchError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
