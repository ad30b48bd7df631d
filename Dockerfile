FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY producer ./producer
COPY consumer ./consumer
RUN pip install . && useradd --create-home --uid 10001 healthpipe
COPY config ./config
USER healthpipe
ENTRYPOINT ["healthpipe"]
CMD ["--help"]
