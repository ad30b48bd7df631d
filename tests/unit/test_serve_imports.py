"""The feature server answers from its stream store without pandas or pyarrow in the process: together they are
~80 MB of resident memory before any series (B8's budget is 200 MB for 10,000 series × 5 minutes). They load only
when a request reaches past the store and InfluxDB is read through the window cache."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import sys
from healthpipe import cli
from healthpipe.common.config import HealthpipeConfig
from healthpipe.ml.serve import FeatureServer
server = FeatureServer(HealthpipeConfig(), 0)
server.registry.collect()  # /metrics, the window cache's selectors among them
print(sorted(m for m in ("pandas", "pyarrow") if m in sys.modules))
"""


def test_a_feature_server_is_made_without_pandas_or_pyarrow():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
