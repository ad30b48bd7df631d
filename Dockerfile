# The pipeline image: the pipeline's packages and nothing of the operations tooling (ops/).
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY producer ./producer
COPY consumer ./consumer
COPY verify ./verify
COPY archive ./archive
COPY tiers ./tiers
COPY healthpipe ./healthpipe
# `python -m` from /app imports these copies (the working directory comes first on sys.path), which nobody may
# write bytecode for at run time: compile them once here, or every process start compiles them again
RUN pip install . && python -m compileall -q common producer consumer verify archive tiers healthpipe \
    && useradd --create-home --uid 10001 healthpipe
COPY config ./config
USER healthpipe
# `docker run healthpipe producer` = `python -m producer` (each package runs its own main)
ENTRYPOINT ["python", "-m"]
CMD ["producer"]

# The demo app (docker-compose's `demo-app`) is operations tooling: an image of its own.
FROM runtime AS demo
COPY ops ./ops
ENTRYPOINT ["python", "-m", "ops.cli"]
CMD ["demo-app"]
