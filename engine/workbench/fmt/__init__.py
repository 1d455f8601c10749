"""``charter fmt``: policy files in one canonical form, every comment kept.

One file goes through five steps:

1. the engine's own loader (``load_text``) reads it: a YAML syntax error stops here, located;
2. a scan of PyYAML's tokens finds every comment and blank line and ties it to an entry (a
   mapping key or a list item): a full-line comment or blank line to the entry below it, an
   end-of-line comment to the entry on its line; the comments above the first key are the
   file's header and stay on top, the `yaml-language-server` modeline first;
3. ruamel.yaml's round-trip loader reads it again (only after step 1 accepted it, so no tag
   the safe loader refuses ever reaches it); ruamel's own record of comments is dropped, keys
   are put in canonical order (``key_order``) and the data is dumped: quotes, flow style and
   block scalars as written, 2-space indentation, list items indented under their key, no
   re-wrapping;
4. the comments go back by line next to their entries; flow collections the author broke over
   several lines are broken again before the same items (aligned with the collection's first
   item), and plain text broken over lines at the same words (two columns deeper than its key);
5. the result must keep every comment and, read by ``load_text``, hold the same data (same
   types, same order of user-named keys): otherwise the file is refused, located, untouched.

The modules: ``source`` finds comments, blank lines and entries by line (in the file, and
again in the dump), ``comments`` ties them to entries and puts them back (steps 2 and 4),
``order`` holds the canonical key orders, ``layout`` dumps through ruamel.yaml (step 3) and
says where lines are broken again, and ``command`` formats and checks one file (step 5),
writes the files named and registers the command.
"""

from __future__ import annotations

from engine.workbench.fmt.command import (
    DEFAULT_PATH,
    Formatted,
    add_command,
    check,
    collect,
    difference,
    format_document,
    format_file,
    format_text,
    run,
    write_atomic,
)
from engine.workbench.fmt.comments import Plan, assemble, attach
from engine.workbench.fmt.layout import dump
from engine.workbench.fmt.order import canonical, key_order
from engine.workbench.fmt.source import Entry, FlowItem, Note, entries, scan

__all__ = [
    "DEFAULT_PATH",
    "Entry",
    "FlowItem",
    "Formatted",
    "Note",
    "Plan",
    "add_command",
    "assemble",
    "attach",
    "canonical",
    "check",
    "collect",
    "difference",
    "dump",
    "entries",
    "format_document",
    "format_file",
    "format_text",
    "key_order",
    "run",
    "scan",
    "write_atomic",
]
