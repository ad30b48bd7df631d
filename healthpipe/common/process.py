"""What every healthpipe process does around its loop: status endpoints, signals, a clean close."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol

from healthpipe.common.observability import StatusServer

log = logging.getLogger(__name__)


class Service(Protocol):
    metrics: Any
    status_server: StatusServer | None

    def initialize(self) -> None: ...
    def ready(self) -> bool: ...
    def not_ready_reason(self) -> str: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


def run_service(name: str, service: Service, metrics_port: int, loop: Callable[[], None],
                host: str = "127.0.0.1") -> int:
    """Serve /metrics, /healthz, /readyz on host:metrics_port; SIGTERM or SIGINT asks the loop to stop; always
    close; exit 0."""
    if metrics_port:
        service.status_server = StatusServer(service.metrics.registry, service.ready, metrics_port, host,
                                             reason=service.not_ready_reason).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    try:
        service.initialize()
        loop()
    finally:
        service.close()
    log.info("%s_stopped", name)
    return 0
