"""The compliance officer's workbench: policy tests and coverage, lint, semantic diff, fmt.

Each command lives in its own package with an ``add_command(subparsers)`` function that
registers its ``charter`` subcommand; ``add_commands`` wires them all into the CLI.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.workbench import diff, fmt, lint, policytest


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    for command in (policytest, lint, diff, fmt):
        command.add_command(sub)
