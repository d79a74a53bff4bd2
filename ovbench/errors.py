"""Exceptions that the CLI turns into a one-line message and exit code 2.

Library code never calls ``sys.exit``; it raises one of these with a message that names the
file at fault and the fix.
"""
from __future__ import annotations

from typing import Sequence


class OvbenchError(Exception):
    """A user-facing error: bad input, missing files, unknown ids."""


class ValidationError(OvbenchError):
    """A submission or dataset failed validation; carries every problem found.

    ``problems`` holds one line per problem; the message shows the first ``shown`` of them
    plus a count of the rest, so that a user can fix everything in one round.
    """

    def __init__(self, what: str, problems: Sequence[str], fix: str = "", shown: int = 20) -> None:
        self.what = what
        self.problems = list(problems)
        self.fix = fix
        head = self.problems[:shown]
        lines = [f"{what}: {len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in head]
        if len(self.problems) > shown:
            lines.append(f"  ... and {len(self.problems) - shown} more")
        if fix:
            lines.append(f"fix: {fix}")
        super().__init__("\n".join(lines))
