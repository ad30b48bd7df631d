"""What `healthpipe up` started, recorded under .stack/ so that `healthpipe down` stops exactly that.

`down` used to look at the machine when it ran: a Docker engine started after a native `up` made it run
`docker compose down`, and the native producer, consumer and archive kept running into the next stack.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from healthpipe.common.errors import StackError
from healthpipe.ops.stack.paths import STACK_DIR

RECORD = STACK_DIR / "up.json"
Mode = Literal["native", "compose"]


@dataclass(frozen=True)
class Started:
    mode: Mode
    pids: dict[str, int] = field(default_factory=dict)  # native: the pipeline's processes by service name
    at: float = field(default_factory=time.time)


def record(started: Started) -> None:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(asdict(started), indent=2) + "\n")


def recorded() -> Started | None:
    try:
        data = json.loads(RECORD.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise StackError(f"{RECORD} is not what `healthpipe up` writes ({e}); remove it after stopping by hand") from e
    if data.get("mode") not in ("native", "compose"):
        raise StackError(f"{RECORD}: unknown mode {data.get('mode')!r} (native or compose)")
    return Started(mode=data["mode"], pids={k: int(v) for k, v in data.get("pids", {}).items()}, at=data.get("at", 0))


def forget() -> None:
    RECORD.unlink(missing_ok=True)
