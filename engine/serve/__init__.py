"""``charter serve``: Charter's decisions over HTTP (docs/serve.md).

* ``service`` — ``Service``: the engine, its log and watcher, decide/describe/ready, no HTTP;
* ``app``     — ``create_app(service)``: the Starlette application (JSON via orjson);
* ``auditlog``, ``jobs`` — the decision log for auditors: find, show, verify, replay jobs;
* ``metrics`` — Prometheus metrics; ``openapi`` — the OpenAPI document (docs/openapi.json);
* ``cli``     — the ``charter serve`` command (uvicorn).

Importing this package imports nothing of the web stack; ``engine.serve.app`` does.
"""
