"""A closed-loop HTTP/1.1 load client in a process of its own: `connections` kept-alive connections on one asyncio
loop, each sending its next GET as soon as the last answer is whole. Prints {"latencies_s": [...], "errors": n}.

Why its own process and one loop: clients as threads of the benchmark's process (http.client) shared a GIL with the
benchmark's Kafka producer and consumer, and at 32 threads measured the client's own turns on the GIL as the
server's latency. One loop on raw streams costs ~40 us a request.

    python -m bench.http_load --port 8010 --connections 32 --seconds 8 \
        --path '/features?query=bench&match%5Binstance%5D=node-{k}&window=5m' --keys 1000

`{k}` in the path is replaced by a random integer below --keys for each request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time


async def client(port: int, path: str, keys: int, deadline: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline:
            target = path.replace("{k}", str(random.randrange(keys))) if keys else path
            t0 = time.perf_counter()
            writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            took = time.perf_counter() - t0
            if status == 200:
                latencies.append(took)
            else:
                errors[0] += 1
    finally:
        writer.close()


async def run(port: int, connections: int, seconds: float, path: str, keys: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client(port, path, keys, deadline, latencies, errors) for _ in range(connections)))
    return {"latencies_s": latencies, "errors": errors[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--path", required=True)
    parser.add_argument("--keys", type=int, default=0, help="{k} in --path: a random integer below this")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.port, args.connections, args.seconds, args.path, args.keys))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
