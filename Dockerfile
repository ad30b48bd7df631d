# The pipeline image: the `healthpipe` package as one wheel, its C fast paths included, installed into a venv
# that is the only thing the runtime stage receives (no sources, no compiler, nothing that shadows
# site-packages). The base is an argument so that a machine without Docker Hub can build on a base of its own
# (scripts/docker/base-image.sh); both stages must use the same base, since the venv is copied between them.
#   docker build --network host -t healthpipe:0.2.0 .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# gcc for healthpipe/schema/_fastline.c; Python's headers where the base lacks them (Debian's python3 does);
# tini-static so that the runtime stage gets an init for PID 1 without an apt step of its own
RUN apt-get update \
    && headers=$(python3 -c 'import os, sysconfig; print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3-dev")') \
    && apt-get install -y --no-install-recommends gcc libc6-dev tini $headers \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/healthpipe
ENV PATH=/opt/healthpipe/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY healthpipe ./healthpipe
# the wheel must carry the compiled fast paths (the consumer's, the receiver's): a wheel without one would run the
# slow path unnoticed
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python3 -c "import zipfile, glob, sys; names = zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist(); \
sys.exit(0 if all(any(n.startswith(m) and n.endswith('.so') for n in names) \
for m in ('healthpipe/schema/_fastline', 'healthpipe/receive/_samples')) else 'no fast path')"
# the dependencies at the versions of the lock file (constraints.txt, `make lock`); pip compiles the bytecode
# as it installs, so no container start compiles it again. Test suites inside dependencies are never imported;
# pyarrow's C++ headers neither, and its libraries ship with symbols (163 -> 123 MB stripped). Only pyarrow's:
# numpy's auditwheel-patched libraries break when stripped (ELF offsets not page-aligned).
RUN pip install -c constraints.txt /wheels/*.whl \
    && pip uninstall -y pip setuptools \
    && find /opt/healthpipe/lib -depth -type d -name tests -path '*site-packages/*/tests' -exec rm -rf {} + \
    && (cd /opt/healthpipe/lib/python3*/site-packages/pyarrow && rm -rf include src _pyarrow_cpp_tests*.so \
        && find . -maxdepth 1 -name '*.so*' -type f -exec strip --strip-unneeded {} +) \
    && python3 -c "import healthpipe.schema as s, healthpipe.receive.decode as d; \
assert s.fastline.__file__.endswith('.so') and d._compiled.__file__.endswith('.so'), (s.fastline, d._compiled)"

FROM ${PYTHON_IMAGE} AS runtime
COPY --from=build /usr/bin/tini-static /usr/bin/tini
COPY --from=build /opt/healthpipe /opt/healthpipe
# a numeric user needs no passwd entry (minimal bases have no useradd); HOME and matplotlib's cache in /tmp,
# the one place a read-only root filesystem (Kubernetes' securityContext) leaves writable; the metrics ports and
# the receiver listen beyond the container (Prometheus and the kubelet come from outside it)
ENV PATH=/opt/healthpipe/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib \
    HEALTHPIPE_PROBE_FILE=/tmp/healthpipe-status-port HEALTHPIPE_CONFIG=/etc/healthpipe/healthpipe.yaml \
    HEALTHPIPE_PIPELINE__METRICS_HOST=0.0.0.0 HEALTHPIPE_RECEIVE__HOST=0.0.0.0
COPY config/healthpipe.yaml /etc/healthpipe/healthpipe.yaml
USER 10001:10001
WORKDIR /tmp
# the long-running commands record the port of their /healthz (HEALTHPIPE_PROBE_FILE); `probe` asks it
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["healthpipe", "probe"]
# tini reaps children and passes SIGTERM on, so the consumer's drain runs on `docker stop`
ENTRYPOINT ["tini", "--", "healthpipe"]
CMD ["producer"]

# docker-compose's `demo-app`: the same image, another command
FROM runtime AS demo
CMD ["demo-app", "--host", "0.0.0.0"]
