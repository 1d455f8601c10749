# Charter's decision service, `charter serve`, in a container (docs/serve.md, "In a container").
#
#   docker build -t charter .
#   docker run -p 8080:8080 \
#     -v charter-data:/data -v charter-keys:/keys \
#     -v "$PWD/tokens.yaml:/run/secrets/charter/tokens.yaml:ro" \
#     charter
#
# /data (a volume) holds the SQLite decision log; /keys (another volume, never beside the data)
# its master key and the keyring (charter.key.keyring) that `charter log erase` rotates. Keep
# and back up both, apart: a copy of /data alone opens nothing. A backup of the keyring taken
# before an erase can open the erased customer's values again, so keep keyring backups no
# longer than the erasure policy allows (docs/audit.md, "Erasure").
# The tokens file (digests only: `charter serve token new NAME --scopes decide --add tokens.yaml`)
# is mounted read-only; the service reads it again when it changes. Serving 0.0.0.0 needs
# tokens (or TLS with client certificates): without them the service refuses to start (C087).
# Policies: the image's own copy of policies/, or mount a directory over /app/policies.

# -- build: wheels for Charter and its dependencies (durable-rules compiles C code) ------------
FROM python:3.12-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- run: the wheels only, as a user without privileges -----------------------------------------
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels charter \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin charter \
    && mkdir -p /data /keys /run/secrets/charter \
    && chown charter /data /keys \
    && chmod 700 /keys
WORKDIR /app
COPY --chown=root:root policies ./policies
USER charter
VOLUME ["/data", "/keys"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["charter", "serve", "--host", "0.0.0.0", "--port", "8080", "--policies", "/app/policies", "--store", "sqlite:////data/charter.db", "--key-file", "/keys/charter.key", "--tokens", "/run/secrets/charter/tokens.yaml", "--log-format", "json"]
