# Dockyard server and agent in one image. The agent needs the Docker socket mounted.
# BASE can point at any image with Python >= 3.11 (e.g. a locally imported Debian rootfs
# where no registry is reachable).
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY agent ./agent
COPY migrations ./migrations
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir . && rm -rf /root/.cache
ENV PATH=/venv/bin:$PATH DOCKYARD_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["dockyard"]
CMD ["server", "--host", "0.0.0.0", "--port", "8080"]
