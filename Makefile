# healthpipe: `make up` runs the pipeline with demo data, `make test` runs the tests.
VENV   ?= .venv
PY     := $(VENV)/bin/python
HP     := $(VENV)/bin/healthpipe
PYTEST := $(VENV)/bin/pytest

.PHONY: proto install stack-up stack-down stack-status test test-unit test-integration test-chaos test-cluster test-secure test-docker test-compose compose-images lint lock image mutations \
        up down logs status bench bench-full clean

# Installs at the versions of the lock file (constraints.txt); `make lock` updates it from pyproject.toml. The C
# sources are prerequisites too: the editable install compiles them in place, and a changed one must be rebuilt.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt setup.py $(wildcard healthpipe/*/_*.c)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip && .lock-venv/bin/pip install -q '.[dev]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude healthpipe; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv
	@echo "constraints.txt updated: review the diff, then make install"

# The image, built on Docker Hub's python:3.11-slim, or on a base of this machine's own where Docker Hub is
# unreachable (PYTHON_IMAGE=local: scripts/docker/base-image.sh). Needs a running Docker engine.
IMAGE ?= healthpipe:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PYTHON_IMAGE ?= python:3.11-slim
image:
	base=$(PYTHON_IMAGE); [ "$$base" != local ] || base=$$(scripts/docker/base-image.sh); \
	docker build --network host --build-arg PYTHON_IMAGE=$$base --target runtime -t $(IMAGE) .

# What `docker compose -f docker-compose.yml -f compose.local.yml up` runs where nothing can be pulled: healthpipe's
# two images under the names docker-compose.yml gives them, and the stand-ins (deploy/standins; needs the native
# stack's cached builds: make stack-up once).
compose-images: install
	base=$(PYTHON_IMAGE); [ "$$base" != local ] || base=$$(scripts/docker/base-image.sh); \
	docker build --network host --build-arg PYTHON_IMAGE=$$base --target runtime -t healthpipe:latest . && \
	docker build --network host --build-arg PYTHON_IMAGE=$$base --target demo -t healthpipe-demo:latest .
	scripts/docker/standins.sh

KAFKA_BROKERS ?= 1
# SECURE=1: Kafka over SASL_SSL with ACLs, InfluxDB over https, a principal and a token per role (docs/security.md)
SECURE ?=
# The S3 server (SeaweedFS) is part of the stack: the archive's tests run against it.
stack-up: install
	$(HP) stack up --with s3 --kafka-brokers $(KAFKA_BROKERS) $(if $(SECURE),--secure)

stack-down:
	@if [ -x $(HP) ]; then $(HP) stack down; fi

stack-status: install
	$(HP) stack status

# The real services are part of the tests: bring the native stack up first (idempotent, seconds when warm).
test: stack-up
	$(PYTEST) -m "unit or integration" --durations=15

test-unit: install
	$(PYTEST) -m unit -q

test-integration: stack-up
	$(PYTEST) -m integration

test-chaos: stack-up
	$(PYTEST) -m chaos --durations=0

# Switches the native stack to a 3-broker KRaft cluster (RF=3, min.insync.replicas=2) and breaks it.
test-cluster: install
	$(HP) stack up --with s3 --kafka-brokers 3
	$(PYTEST) -m cluster

# Switches the native stack to the secured one (SASL_SSL + ACLs, InfluxDB over https, a principal and a token per
# role: docs/security.md) and runs its suite; `make stack-up` switches back.
test-secure: install
	$(HP) stack up --with s3 --secure
	$(PYTEST) -m secure

# The image on a real Docker engine against the native stack (scripts/docker/engine.sh start, as root, first)
test-docker: stack-up
	$(PYTEST) -m docker

# docker compose up for real on the host network (compose.local.yml): it takes the native stack's ports, so the
# native stack is stopped first. Needs a running engine; Compose v2 is built here once (scripts/docker/compose.sh).
test-compose: install
	scripts/docker/compose.sh >/dev/null
	$(MAKE) compose-images PYTHON_IMAGE=local
	$(HP) stack down
	$(PYTEST) -m compose

# The remote-write messages (healthpipe/receive/proto/*.proto) as Python: protoc from grpcio-tools (a dev dependency)
proto: install
	cd healthpipe/receive/proto && ../../../$(VENV)/bin/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. *.proto

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy healthpipe
	$(VENV)/bin/lint-imports --no-cache

# Deliberate breakages that the tests must catch (tests/mutations/README.md); the cluster one needs
# `make test-cluster`'s 3-broker stack, the others the default stack
mutations: stack-up
	$(PY) -m tests.mutations --stage unit --stage integration --stage chaos

# Without a Docker engine: the native stack plus producer and consumer in the background.
up: install
	$(HP) up

down:
	@if [ -x $(HP) ]; then $(HP) down; fi

logs:
	@tail -n 50 -F .stack/logs/*.log

status: install
	$(HP) status

# Benchmarks need the stack; results in BENCHMARKS.md (numbers) and bench/results/ (raw, git-ignored).
bench: stack-up
	$(PY) -m bench.run --quick
	$(PY) -m bench.producer --runs 3
	$(PY) -m bench.e2e --runs 1
	$(PY) -m bench.freshness --seconds 30

bench-full: stack-up
	$(PY) -m bench.run
	$(PY) -m bench.producer --runs 3
	$(PY) -m bench.e2e --runs 3
	$(PY) -m bench.freshness --seconds 120
	$(PY) -m bench.memory

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
