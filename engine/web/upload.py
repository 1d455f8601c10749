"""An edited policy directory uploaded from the browser, for ``/ui/impact`` (``POST``).

The form sends the files as ``multipart/form-data`` (Starlette's ``request.form()``, which
needs python-multipart): picked as a directory (``<input type=file webkitdirectory>``: each
name is ``folder/file.yaml``) or as several files (each name ``file.yaml``). What is kept:

* the policy files: ``*.yaml`` and ``*.yml`` directly in the folder picked, as the loader
  reads a directory (``engine.core.load``); files in its subfolders (``tests/``) and files of
  other kinds (a README) are left out and listed;
* a name is a plain file name: a name with ``..``, a backslash, an empty part, a control
  character, or a path deeper than ``folder/file`` for a policy is refused (C092), never
  written anywhere but a fresh temporary directory, which is removed after the comparison;
* at most ``MAX_FILES`` files (C094 past it), together at most the service's ``max_body`` bytes (the limit
  ``BodyLimit`` already holds the whole request to; C092 past it).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from engine.serve.app import MAX_BODY, BodyLimit
from engine.serve.errors import ServeError

MAX_FILES = 200
MAX_FIELDS = 40
POLICY_SUFFIXES = (".yaml", ".yml")
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._ -]{0,120}$")


@dataclass
class Uploaded:
    """The policy files kept (name -> content), the folder they came from and those left out."""

    files: dict[str, bytes] = field(default_factory=dict)
    folder: str = ""
    skipped: list[str] = field(default_factory=list)
    directory: Path | None = None  # where they are written, while the comparison runs


def body_limit(request: Request) -> int:
    """The service's ``max_body``: the limit its ``BodyLimit`` middleware was given."""
    for m in getattr(request.app, "user_middleware", ()):
        if m.cls is BodyLimit:
            return int(m.kwargs.get("limit", MAX_BODY))
    return MAX_BODY


def refused(message: str, hint: str, status: int = 422) -> ServeError:
    return ServeError(message, status=status, code="C092", hint=hint)


async def form_of(request: Request, *, max_files: int, max_fields: int) -> FormData:
    """The request's form (``multipart/form-data`` or urlencoded), each part at most the
    service's ``max_body``; a form the parser refuses (too many files or fields, a broken
    body) is a ``ServeError`` C094, answered as a page (400)."""
    try:
        return await request.form(max_files=max_files, max_fields=max_fields, max_part_size=body_limit(request))
    except HTTPException as exc:
        raise ServeError(
            f"the form cannot be read: {exc.detail}",
            status=400,
            code="C094",
            hint=f"send at most {max_files} file(s) and {max_fields} field(s)",
        ) from None


async def read_form(request: Request) -> tuple[dict[str, str], Uploaded]:
    """The form's text fields and its uploaded policy files (the field ``files``), checked."""
    limit = body_limit(request)
    form = await form_of(request, max_files=MAX_FILES, max_fields=MAX_FIELDS)
    fields: dict[str, str] = {}
    uploaded = Uploaded()
    total = 0
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields.setdefault(key, value)
                continue
            if key != "files" or not value.filename:
                continue  # an empty file input sends a part without a name
            total += await _keep(uploaded, value, limit - total)
    finally:
        await form.close()
    if not uploaded.files:
        raise refused(
            "no policy file was uploaded",
            "pick the edited policy directory, or its `.yaml` files" + _skipped_hint(uploaded),
        )
    return fields, uploaded


async def _keep(uploaded: Uploaded, part: UploadFile, room: int) -> int:
    name = str(part.filename)
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in name or any(ord(ch) < 32 for ch in name):
        raise refused(f"the uploaded file name `{name}` is not a plain file name", "upload the policy files by name")
    if not parts[-1].endswith(POLICY_SUFFIXES) or len(parts) > 2:  # as the loader reads them: `.YAML` is not one
        uploaded.skipped.append(name)  # a README, or tests/…: not a policy file of the directory
        return 0
    folder, base = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
    if not _PLAIN.match(base) or (folder and not _PLAIN.match(folder)):
        raise refused(f"the uploaded file name `{name}` is not a plain file name", "letters, digits, `._-` only")
    if uploaded.files and folder != uploaded.folder:
        raise refused("the files come from more than one folder", "upload one policy directory at a time")
    if base in uploaded.files:
        raise refused(f"the file `{base}` is uploaded twice", "upload each policy file once")
    uploaded.folder = folder
    data = await part.read(room + 1)
    if len(data) > room:
        raise refused("the uploaded files are over the service's body limit", "upload the policy files only", 413)
    uploaded.files[base] = data
    return len(data)


def _skipped_hint(uploaded: Uploaded) -> str:
    return f" (left out: {', '.join(f'`{n}`' for n in uploaded.skipped[:5])})" if uploaded.skipped else ""


@contextmanager
def written(uploaded: Uploaded) -> Iterator[Uploaded]:
    """``uploaded`` written to a fresh temporary directory, removed on leaving."""
    with tempfile.TemporaryDirectory(prefix="charter-upload-") as tmp:
        root = Path(tmp) / (uploaded.folder or "uploaded")
        root.mkdir()
        for name, data in uploaded.files.items():
            (root / name).write_bytes(data)
        uploaded.directory = root
        try:
            yield uploaded
        finally:
            uploaded.directory = None


def described(uploaded: Uploaded) -> Mapping[str, Any]:
    """What the page says of the upload."""
    return {"folder": uploaded.folder, "files": sorted(uploaded.files), "skipped": uploaded.skipped}
