# syntax=docker/dockerfile:1
# The simulator image: the OpenAI Videos API provider simulator for the dev overlay (ffmpeg from imageio-ffmpeg).
# Build from the repository root (.dockerignore there keeps the context to sources):
#   docker build -f deploy/docker/simulator.Dockerfile -t vidflow/simulator:dev .

FROM python:3.11.14-slim-trixie AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /build
COPY pyproject.toml deploy/docker/service_requirements.py ./
# Versions come from pyproject.toml only. protoc gets a throwaway venv; the runtime venv holds only
# what this image imports.
RUN python service_requirements.py --protoc > protoc.txt \
 && python -m venv /opt/protoc && /opt/protoc/bin/pip install -r protoc.txt \
 && python service_requirements.py simulator > requirements.txt \
 && python -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt
# Generated code is never committed: build it from the .proto files, as `make gen` does.
COPY protos/ protos/
RUN /opt/protoc/bin/python -m grpc_tools.protoc -I protos --python_out=protos \
      $(find protos/vidflow -name '*.proto') \
 && /opt/protoc/bin/python -m grpc_tools.protoc -I protos --grpc_python_out=protos \
      $(find protos/vidflow -name '*_service.proto') \
 && mkdir -p /app && cp -r protos /app/protos
COPY lib/servicekit/ /app/lib/servicekit/
COPY simulator/ /app/simulator/
# Compiled now, because the root filesystem is read-only at run time.
RUN /opt/venv/bin/python -m compileall -q /app

FROM python:3.11.14-slim-trixie
RUN groupadd --system --gid 10001 vidflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin vidflow
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/protos:/app/lib:/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 8090
ENTRYPOINT ["python", "-m", "simulator"]
