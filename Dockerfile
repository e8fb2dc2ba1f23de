# lq: one image for `lq gateway`, `lq shard`, `lq status` and `lq token`.
#
#   docker build -t lq:0.1.0 .
#   docker run --rm -e LQ_REDIS_URL=redis://redis:6379/0 -e LQ_JWT_SECRET=... \
#       -e LQ_HOST=0.0.0.0 -p 8080:8080 lq:0.1.0 gateway
#
# The build stage compiles wheels (with a compiler, in case a dependency has no wheel
# for this platform); the runtime stage gets only the virtual environment with lq and
# its runtime dependencies, no compiler, no tests, no caches, and runs as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/lq
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cluster ./cluster
COPY storage ./storage
COPY shard ./shard
COPY gateway ./gateway
COPY lq ./lq
COPY clients/python/lq_client ./clients/python/lq_client
# gateway/static/lq-client.js links to the JavaScript client's one copy
COPY clients/js/lq-client.js ./clients/js/lq-client.js
RUN /opt/lq/bin/pip install --upgrade pip \
 && /opt/lq/bin/pip install . \
 && /opt/lq/bin/lq --version

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="lq" \
      org.opencontainers.image.description="A live query cluster on Redis" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/lq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LQ_HOST=0.0.0.0 \
    LQ_HTTP_HOST=0.0.0.0
RUN groupadd --system --gid 10001 lq \
 && useradd --system --uid 10001 --gid lq --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin lq
COPY --from=build /opt/lq /opt/lq
USER 10001:10001
# 8080: gateway (HTTP, WebSocket, SSE, long polling, /metrics); 9100: shard health and metrics
EXPOSE 8080 9100
ENTRYPOINT ["lq"]
CMD ["--help"]
