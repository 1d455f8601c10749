"""Stage 1, load: policy YAML into plain data, remembering where every node came from.

YAML is read with PyYAML's ``SafeLoader`` only. The composed node tree is turned into
plain Python data by hand so that:

* every node's 1-based line and column is kept, keyed by its path in the document;
* a key written twice in one mapping is an error (PyYAML would keep the last silently);
* alias expansion is bounded (a "billion laughs" file stops at ``MAX_NODES``);
* nesting is bounded (``MAX_DEPTH``), so no ``RecursionError`` escapes;
* invalid UTF-8 and YAML syntax errors become located ``PolicyError``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.core import yamltext
from engine.errors import Location, PolicyError, PolicyErrors


class PolicyLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only `true` and `false`.

    YAML 1.1 also reads `yes`, `no`, `on`, `off`, `y` and `n` as booleans, so a country
    code `NO` or an answer `no` would silently become `false` ("the Norway problem").
    """


class FastPolicyLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """The same, parsed by libyaml when it is installed: several times faster on large files.
    Used for files that parse cleanly and are not deeply nested; any problem is reported by
    re-reading with ``PolicyLoader``, so messages and locations are always the same."""


for _loader in (PolicyLoader, FastPolicyLoader):
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    # YAML 1.1 reads `18:00` as the number 1080 (base 60); YAML 1.2 and officers read it as text
    _loader.yaml_implicit_resolvers = {
        first: [
            (tag, re.compile("(?!.*:)" + regexp.pattern, regexp.flags) if tag.endswith(("int", "float")) else regexp)
            for tag, regexp in resolvers
        ]
        for first, resolvers in _loader.yaml_implicit_resolvers.items()
    }

# scalars kept as the text written, never constructed by YAML
_AS_TEXT = frozenset(("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary", "tag:yaml.org,2002:set"))

MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_BYTES = 5 * 1024 * 1024

DocPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Span:
    """Where a scalar node sits: start line/column (1-based) and its YAML style."""

    line: int
    column: int
    style: str | None  # None for plain, '"' or "'" for quoted, '|' or '>' for block


@dataclass
class Document:
    """One loaded policy file: its data, raw bytes and the location of every node."""

    path: str
    data: Any
    raw: bytes
    spans: dict[DocPath, Span] = field(default_factory=dict)
    key_spans: dict[DocPath, Span] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def location(self, path: DocPath, *, key: bool = False) -> Location:
        """The location of the node at ``path`` (or of its key), falling back to its nearest parent."""
        table = self.key_spans if key else self.spans
        probe = path
        while True:
            span = table.get(probe) or self.spans.get(probe)
            if span is not None:
                return Location(self.path, span.line, span.column, path)
            if not probe:
                return Location(self.path, 1, 1, path)
            probe = probe[:-1]

    def text_location(self, path: DocPath, offset: int) -> Location:
        """The location of character ``offset`` inside the scalar string at ``path``."""
        span = self.spans.get(path)
        if span is None:
            return self.location(path)
        text = self.get(path)
        before = text[:offset] if isinstance(text, str) else ""
        line_delta = before.count("\n")
        col_in_line = len(before) - (before.rfind("\n") + 1)
        if span.style in ("|", ">"):
            source_line = span.line + 1 + line_delta
            lines = self.raw.decode("utf-8", "replace").splitlines()
            indent = 0
            if span.line < len(lines):  # the block's indentation is that of its first content line
                first = lines[span.line]
                indent = len(first) - len(first.lstrip(" "))
            return Location(self.path, source_line, indent + 1 + col_in_line, path)
        quote = 1 if span.style in ('"', "'") else 0
        if line_delta:
            return Location(self.path, span.line + line_delta, col_in_line + 1, path)
        return Location(self.path, span.line, span.column + quote + col_in_line, path)

    def get(self, path: DocPath) -> Any:
        node = self.data
        for part in path:
            node = node[part]
        return node


class _Converter:
    """Turns a composed YAML node tree into plain data, recording spans."""

    def __init__(self, loader: PolicyLoader, doc: Document) -> None:
        self.loader = loader
        self.doc = doc
        self.count = 0
        self.errors: list[PolicyError] = []

    def convert(self, node: yaml.Node, path: DocPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Abort(
                self._error(
                    node,
                    path,
                    "P006",
                    f"the file has more than {MAX_NODES} values",
                    "remove repeated anchors (`*name`) or split the file",
                )
            )
        if depth > MAX_DEPTH:
            raise _Abort(
                self._error(
                    node, path, "P007", f"values are nested more than {MAX_DEPTH} deep", "flatten the structure"
                )
            )
        self.doc.spans[path] = _span(node)
        if not isinstance(node, yaml.ScalarNode) and not str(node.tag).startswith("tag:yaml.org,2002:"):
            self.errors.append(_yamlerrors().tag_error(self.doc.path, node.start_mark, str(node.tag)))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: DocPath) -> Any:
        """A scalar's value. Dates, times and binary stay the text the officer wrote (the
        schema decides; an impossible date like `2025-02-30` is refused there, located);
        a value YAML cannot read at all is a located error, never an exception."""
        if node.tag in _AS_TEXT:
            return str(node.value)
        try:
            value = self.loader.construct_object(node)
        except yaml.constructor.ConstructorError:
            self.errors.append(_yamlerrors().tag_error(self.doc.path, node.start_mark, str(node.tag)))
            return str(node.value)
        except (ValueError, OverflowError):
            self.errors.append(
                self._error(
                    node,
                    path,
                    "P012",
                    f"`{str(node.value)[:40]}` cannot be read as a value",
                    "put it in double quotes if it is text; write numbers with at most 4,000 digits",
                )
            )
            return str(node.value)
        if isinstance(value, (bytes, set)) or type(value).__name__ in ("date", "datetime"):
            return str(node.value)
        if type(value) is int and not -(2**63) <= value < 2**63:  # what JSON consumers and SQL stores hold
            self.errors.append(
                self._error(
                    node,
                    path,
                    "P199",
                    f"`{str(node.value)[:40]}` is past the largest whole number a decision holds (64 bits)",
                    f"write a number between {-(2**63):,} and {2**63 - 1:,} (without the commas)",
                )
            )
        return value

    def _mapping(self, node: yaml.MappingNode, path: DocPath, depth: int) -> dict[str, Any]:
        self.loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int, float, bool)) or isinstance(key, bool):
                self.errors.append(
                    self._error(
                        key_node, path, "P004", "a key must be a plain word", "write the key as text, like `id:`"
                    )
                )
                continue
            key = str(key)
            child = (*path, key)
            if key in out:
                first = self.doc.key_spans[child]
                err = self._error(
                    key_node,
                    child,
                    "P005",
                    f"key `{key}` is written twice in this mapping",
                    "keep one of them; YAML would silently use the last",
                )
                err.related = Location(self.doc.path, first.line, first.column)
                self.errors.append(err)
                continue
            self.doc.key_spans[child] = _span(key_node)
            out[key] = self.convert(value_node, child, depth + 1)
        return out

    def _error(self, node: yaml.Node, path: DocPath, code: str, message: str, hint: str) -> PolicyError:
        span = _span(node)
        return PolicyError(message, Location(self.doc.path, span.line, span.column, path), hint=hint, code=code)


class _Abort(Exception):
    def __init__(self, error: PolicyError) -> None:
        super().__init__(error.message)
        self.error = error


def _span(node: yaml.Node) -> Span:
    mark = node.start_mark
    style = getattr(node, "style", None) if isinstance(node, yaml.ScalarNode) else None
    return Span(mark.line + 1, mark.column + 1, style or None)


def _too_big(path: str, size: int) -> PolicyErrors:
    return PolicyErrors(
        [
            PolicyError(
                f"the file is {size} bytes, more than the {MAX_BYTES} allowed",
                Location(path, 1, 1),
                code="P008",
                hint="split the policy into smaller files",
            )
        ]
    )


def read_policy_bytes(path: str | Path, display: str | None = None) -> bytes:
    """A policy file's bytes; a file over ``MAX_BYTES`` is refused before it is read.
    Raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_BYTES:
            raise _too_big(display or str(path), size)
        data = f.read(MAX_BYTES + 1)  # a file still growing is cut here and refused by load_text
    return data


def load_text(raw: bytes, path: str, *, fast: bool = True) -> Document:
    """Load one policy file's bytes. Raises ``PolicyErrors`` with every problem found.

    ``fast``: try libyaml first (the result is the same; ``False`` forces the Python reader)."""
    doc = Document(path=path, data=None, raw=raw)
    if len(raw) > MAX_BYTES:
        raise _too_big(path, len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PolicyErrors(
            [
                PolicyError(
                    "the file is not valid UTF-8",
                    Location(path, line, column),
                    code="P002",
                    hint="save the file as UTF-8",
                )
            ]
        ) from None
    odd = yamltext.scan(text, path)
    if odd:
        raise PolicyErrors(odd)
    if fast and _shallow(text):
        done = _fast(text, raw, path)
        if done is not None:
            return done
    try:
        loader = PolicyLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character the YAML reader refuses
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise PolicyErrors(
            [
                PolicyError(
                    f"the file holds the control character U+{exc.character:04X}",
                    Location(path, line, column),
                    code="P002",
                    hint="delete it; policy files are plain text",
                )
            ]
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyErrors(
                [
                    PolicyError(
                        "the file is empty",
                        Location(path, 1, 1),
                        code="P003",
                        hint="start with `kind:` and the policy's domain",
                    )
                ]
            )
        converter = _Converter(loader, doc)
        doc.data = converter.convert(node, (), 0)
    except yaml.MarkedYAMLError as exc:
        raise PolicyErrors([_yamlerrors().explain(exc, text, path)]) from None
    except yaml.YAMLError:
        raise PolicyErrors([_yamlerrors().unreadable(path, None)]) from None
    except _Abort as exc:
        raise PolicyErrors([exc.error]) from None
    except RecursionError:
        raise PolicyErrors(
            [PolicyError("values are nested too deep", Location(path, 1, 1), code="P007", hint="flatten the structure")]
        ) from None
    finally:
        loader.dispose()
    if converter.errors:
        raise PolicyErrors(converter.errors)
    return doc


def _shallow(text: str) -> bool:
    """Whether no flow collection or indentation nests deeper than the loaders allow: only then
    does the C parser (which recurses on the machine's stack) see the file."""
    if max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0) > 4 * MAX_DEPTH:
        return False
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return True
    depth = deepest = 0
    for m in _BRACKETS.finditer(text):
        depth = max(0, depth + (1 if m.group() in "[{" else -1))
        deepest = max(deepest, depth)
    return deepest <= MAX_DEPTH


_BRACKETS = re.compile(r"[\[\]{}]")


def _fast(text: str, raw: bytes, path: str) -> Document | None:
    """The document read with libyaml, or None when anything at all is wrong with it."""
    doc = Document(path=path, data=None, raw=raw)
    try:
        loader = FastPolicyLoader(text)
    except yaml.YAMLError:
        return None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        converter = _Converter(loader, doc)
        doc.data = converter.convert(node, (), 0)
    except _Abort as exc:  # too many values (or the like): the Python reader would say the same, slowly
        raise PolicyErrors([exc.error]) from None
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    finally:
        loader.dispose()
    return None if converter.errors else doc


def _yamlerrors() -> Any:
    """engine.core.yamlerrors, imported on the first YAML mistake (off the start-up path)."""
    import engine.core.yamlerrors as module

    return module


def load_file(path: str | Path, *, display: str | None = None) -> Document:
    """Load one policy file from disk."""
    p = Path(path)
    try:
        raw = read_policy_bytes(p, display)
    except OSError as exc:
        raise PolicyErrors(
            [
                PolicyError(
                    f"cannot read the file: {exc.strerror or exc}",
                    Location(display or str(p)),
                    code="P009",
                    hint="check the path and its permissions",
                )
            ]
        ) from None
    return load_text(raw, display or str(p))


def policy_files(directory: str | Path) -> Iterator[Path]:
    """The policy files of a directory: ``*.yaml`` and ``*.yml`` directly in it, sorted by name."""
    d = Path(directory)
    yield from sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
