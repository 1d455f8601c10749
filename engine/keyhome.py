"""Where the command line keeps the decision log's keys when none is named: never beside the
data. The master key (``charter.key``) and the checkpoint signing key
(``charter.signing.key``) default to the user's own key directory — ``$CHARTER_HOME``, else
``$XDG_DATA_HOME/charter``, else ``~/.local/share/charter`` — made owner-only (0700), while
the store (``charter.db``) and the checkpoints default to the working directory. Whoever
copies the data (a backup, a shared volume) has no key to open its sealed values with, and no
key to sign a rewritten log's checkpoints with.

A key file left in the working directory by an earlier version is still used there, with a
warning (``legacy_warning``) saying where to move it.
"""

from __future__ import annotations

import os
from pathlib import Path

MASTER = "charter.key"
SIGNING = "charter.signing.key"


def home() -> Path:
    """The user's key directory (not made here)."""
    named = os.environ.get("CHARTER_HOME")
    if named:
        return Path(named)
    data = os.environ.get("XDG_DATA_HOME")
    return (Path(data) if data else Path.home() / ".local" / "share") / "charter"


def default(name: str) -> str:
    """The path of key file ``name`` when none is named: the working directory's when an
    earlier version left one there, else the user's key directory's."""
    return name if Path(name).exists() else str(home() / name)


def make_parent(path: Path) -> None:
    """Make ``path``'s directory, owner-only, when it is missing (a key is about to be made)."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def legacy_warning(path: str) -> str | None:
    """The warning for a key file used from the working directory by default, or None."""
    if Path(path).parent != Path(".") or not Path(path).exists():
        return None
    return (
        f"warning: the log's key `{path}` sits in the working directory, beside the data; move it to "
        f"{home() / Path(path).name} (the default now) or name it with its option"
    )
