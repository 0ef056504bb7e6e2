# syntax=docker/dockerfile:1
# One image for every service of the mesh: `a2a-mesh serve <service>` (or
# MESH_SERVICE_NAME with `a2a-mesh serve`) picks which one runs.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its dependencies from pyproject.toml ---
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/mesh
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY certs ./certs
RUN /opt/mesh/bin/pip install --no-compile . \
    && /opt/mesh/bin/python -m compileall -q /opt/mesh/lib

# --- run: the virtual environment, a non-root user, nothing else ---
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="a2a-mesh" \
      org.opencontainers.image.description="Secure document agent mesh: orchestrator, extractor, validator, archivist"

# The RDS CA bundle is public; with it MESH_DB_CA_FILE verifies RDS by name.
ADD --chmod=0644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
    /usr/local/share/a2a-mesh/rds-global-bundle.pem

COPY --from=build /opt/mesh /opt/mesh
RUN groupadd --system --gid 10001 mesh \
    && useradd --system --uid 10001 --gid mesh --home-dir /nonexistent \
       --shell /usr/sbin/nologin mesh \
    && install -d -o mesh -g mesh -m 0700 /run/mesh \
    && chown mesh:mesh /tmp

ENV PATH=/opt/mesh/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MESH_HOST=0.0.0.0 \
    MESH_RUNTIME_DIR=/run/mesh

# Fargate gives a task volume the owner of the image's VOLUME path, so the
# service can write its TLS files there under a read-only root. The
# extractor's worker processes need a writable /tmp too: multiprocessing's
# forkserver listens on a Unix socket there (compose mounts a tmpfs).
VOLUME ["/run/mesh", "/tmp"]

USER 10001:10001

# /health of the service this container runs, over its own TLS settings.
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s --retries=3 \
    CMD ["a2a-mesh", "health"]

ENTRYPOINT ["a2a-mesh"]
CMD ["serve"]
