# The pipeline image: one wheel of the `healthpipe` package, its C fast path included, and no sources in the
# runtime (so nothing on sys.path shadows the installed package). The base is an argument so that a machine
# without Docker Hub can build it on a base image of its own.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# a compiler for healthpipe/schema/_fastline.c (setup.py); without one pip would build a wheel without it
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY healthpipe ./healthpipe
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -c "import zipfile, glob, sys; names = zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist(); \
sys.exit(0 if any(n.startswith('healthpipe/schema/_fastline') and n.endswith('.so') for n in names) else 'no fast path')"

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
# pip compiles the package's bytecode as it installs, so no process start compiles it again
RUN pip install /wheels/*.whl && rm -rf /wheels && useradd --create-home --uid 10001 healthpipe
WORKDIR /app
COPY config ./config
USER healthpipe
# `docker run healthpipe producer` = `healthpipe producer`
ENTRYPOINT ["healthpipe"]
CMD ["producer"]

# docker-compose's `demo-app`: the same image, another command
FROM runtime AS demo
CMD ["demo-app", "--host", "0.0.0.0"]
