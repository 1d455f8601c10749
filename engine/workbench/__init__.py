"""The compliance officer's workbench: policy tests and coverage, lint, semantic diff, fmt.

Each command lives in its own module with an ``add_command(subparsers)`` function that
registers its ``charter`` subcommand; ``add_commands`` wires them all into the CLI.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

COMMANDS = ("policytest", "lint", "diff", "fmt")


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"engine.workbench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"engine.workbench.{name}":
                raise
            continue  # TODO(session): every module exists once issue 6 lands; then import them directly
        module.add_command(sub)
