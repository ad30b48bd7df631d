"""A Prometheus 3 of a test's own (the stack's cached build), scraping itself and the demo app and remote-writing
to a receiver the test runs: started, asked, stopped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests
import yaml

from healthpipe.ops.stack import PORTS
from healthpipe.ops.stack.prometheus3 import prometheus3_command, remote_write_config
from healthpipe.receive.service import WRITE_PATH
from tests.support.pipeline import free_port, wait_until


class Prometheus3:
    def __init__(self, folder: Path, receiver_port: int, message: str, send_deadline: str | None = "1s"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = remote_write_config(f"http://127.0.0.1:{receiver_port}{WRITE_PATH}", message,
                                     {"prometheus3": [f"127.0.0.1:{self.port}"],
                                      "test-app": [f"127.0.0.1:{PORTS.demo_app}"]}, send_deadline=send_deadline)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = (folder / "prometheus3.log").open("w")
        self.process = subprocess.Popen(prometheus3_command(folder / "prometheus.yml", folder / "data", self.port),
                                        stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, what="Prometheus 3 ready")

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def value(self, promql: str) -> float:
        """The sum of an instant query's values (0 when it has none)."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        return sum(float(r["value"][1]) for r in answer["data"]["result"])

    def sent_past(self, ms: int) -> bool:
        """Everything Prometheus 3 scraped up to `ms` has been sent and acknowledged."""
        return self.value("prometheus_remote_storage_queue_highest_sent_timestamp_seconds") * 1000 > ms

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()
