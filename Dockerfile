# NomadKV node image. Build: docker build -t nomadkv .
# Run:   docker run -p 6379:6379 -p 3000:3000 -v nomadkv-data:/data nomadkv
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY nomadkv ./nomadkv
RUN pip install --no-cache-dir . && useradd --system --home /data nomadkv \
    && mkdir -p /data && chown nomadkv /data

USER nomadkv
VOLUME /data
# RESP, HTTP sidecar, cluster bus (RESP port + 10000)
EXPOSE 6379 3000 16379
# Inside a container the node must listen on the container's interfaces; publish
# ports deliberately and set --requirepass (or NOMADKV options in a config file).
ENTRYPOINT ["nomadkv", "server", "--dir", "/data", "--bind", "0.0.0.0"]
