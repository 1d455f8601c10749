"""The workbench: server-rendered pages for compliance officers and auditors, under ``/ui/``.

Read-only pages over a running ``charter serve`` (docs/workbench.md), each at a stable URL
(GET with query parameters, linkable in a ticket; two forms POST, changing nothing: "Try a
decision" and the upload of an edited policy directory). Jinja2 templates with autoescape, one
hand-written CSS file, SVG bar charts drawn on the server; no JavaScript.

The modules, one per page beside the shared parts:

* ``pages``     — ``routes(service)``: the Starlette routes (a ``Mount`` at ``/ui``), thin handlers;
* ``render``    — the template environment and the HTML error pages;
* ``access``    — what the request may see (``may_unseal``: sealed values in the log);
* ``charts``    — SVG bar charts, escaped;
* ``overview``, ``policies``, ``tests``, ``log``, ``impact``, ``dashboard`` — what each page
  shows, as plain data, from the engine, the workbench (lint, policy tests, diff) and the log
  finder of ``engine.serve.auditlog``; no HTTP in them;
* ``counterfactual`` — "what would change it" (``engine.audit.whynot``) for ``/ui/try`` and a
  logged decision; ``whatif`` — the change impact's replay against the log; ``trends`` — the
  dashboard over time; ``upload`` — an edited policy directory sent from the browser.

The pages sit above both the service and the workbench (``.importlinter``): nothing below
imports them, except ``engine.serve.app`` mounting them.
"""

from __future__ import annotations

from engine.web.pages import routes

__all__ = ["routes"]
