# NomadKV node image. Build: docker build -t nomadkv .
# Run:   docker run -p 6379:6379 -p 3000:3000 -v nomadkv-data:/data nomadkv
#
# Two stages: the request path is compiled with mypyc (nomadkv/native.py), which
# needs a C compiler; the image that runs keeps only the built wheel.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY nomadkv ./nomadkv
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --home /data nomadkv && mkdir -p /data && chown nomadkv /data

USER nomadkv
VOLUME /data
# RESP, HTTP sidecar, cluster bus (RESP port + 10000)
EXPOSE 6379 3000 16379
# Inside a container the node must listen on the container's interfaces; publish
# ports deliberately and set --requirepass (or NOMADKV options in a config file).
ENTRYPOINT ["nomadkv", "server", "--dir", "/data", "--bind", "0.0.0.0"]
