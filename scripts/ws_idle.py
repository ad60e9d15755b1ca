#!/usr/bin/env python3
"""What an idle WebSocket connection costs a ws_echo server, with and without
permessage-deflate (BENCHMARKS.md, "WebSocket").

    python3 scripts/ws_idle.py target/release/examples/ws_echo 2000 MODE

MODE is `plain` (no extension), `deflate` (Python websockets' default offer: context
takeover) or `deflate-nct` (no context takeover either way). It starts the server on
a free port, opens N connections, sends one 120-byte text message on each and reads
its echo, then prints the server's resident memory before and after, per connection.
Needs `pip install websockets`.
"""
import asyncio
import subprocess
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def main(server, n, mode):
    proc = subprocess.Popen([server, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        addr = proc.stdout.readline().split()[-1]
        before = rss_kib(proc.pid)
        options = {"compression": None if mode == "plain" else "deflate"}
        if mode == "deflate-nct":
            options = {"compression": None, "extensions": [ClientPerMessageDeflateFactory(
                server_no_context_takeover=True, client_no_context_takeover=True)]}
        conns = []
        for _ in range(n):
            ws = await connect(f"ws://{addr}/", max_size=None, ping_interval=None, **options)
            await ws.send("hello " * 20)
            await ws.recv()
            conns.append(ws)
        after = rss_kib(proc.pid)
        names = [e.name for e in conns[0].protocol.extensions]
        print(f"{mode}: {n} connections, extensions {names}, RSS {before} -> {after} KiB, "
              f"{(after - before) * 1024 / n:.0f} bytes per connection")
        for ws in conns:
            await ws.close()
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
