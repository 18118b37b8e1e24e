"""A TCP proxy that delays every chunk it forwards: the fleet's latency demo (docs/scaling.md).

This machine's kernel has no ``tc netem``, so latency is added here instead: each chunk read from
either side waits ``--delay-ms`` before it is written to the other, so a request and its answer
take two delays more. Chunks keep their order. The fleet's docker-compose.latency.yml puts it
between the services and Redis.

    python -m lab_common.latency_proxy --listen 0.0.0.0:6379 --target redis:6379 --delay-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while data := await reader.read(CHUNK):
            await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay))

    server = await asyncio.start_server(relay, *listen)
    print(json.dumps({"event": "latency_proxy", "listen": listen, "target": target,
                      "delay_ms": delay * 1000}), flush=True)  # fmt: skip
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab_common.latency_proxy")
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT to accept on")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="each chunk's delay")
    arguments = parser.parse_args(argv)
    if not 0 <= arguments.delay_ms <= 10_000:
        parser.error("--delay-ms must be 0 to 10000")
    asyncio.run(_serve(arguments.listen, arguments.target, arguments.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
