#!/usr/bin/env python3
"""Chat fanout across servers (BENCHMARKS.md, "Chat across servers"): one chat
server alone against two chat servers federated through one redis-server, with the
rig's fanout clients split over the two, alternated round by round.

    python3 scripts/federation_bench.py CHAT LOADGEN ROUNDS RATE [SECONDS] > out.jsonl
    python3 scripts/federation_bench.py --summary out.jsonl

CHAT is a release build of the chat example; LOADGEN the rig's loadgen with
scripts/loadgen-fanout-two-servers.patch applied (`--addr A,B` spreads the
connections over two servers, `--server-pid P1,P2` sums their CPU, `--aux-pid`
reports redis-server's). RATE is lines per second per sender (100 or 1000: the rig's
fanout-c100-k10-r100 and -r1000). Needs redis-server on the PATH.
"""
import json
import socket
import statistics as st
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_chat(chat, extra):
    proc = subprocess.Popen([chat, "--listen", "127.0.0.1:0", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    return proc, line.split()[-1]


def start_redis():
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port


def fanout(loadgen, rate, seconds, addrs, pids, aux=None):
    cmd = [loadgen, "fanout", "--addr", ",".join(addrs), "--conns", "100", "--senders", "10",
           "--rate", rate, "--duration", seconds, "--server-pid", ",".join(map(str, pids))]
    if aux:
        cmd += ["--aux-pid", str(aux)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


def stop(*procs):
    for proc in procs:
        proc.terminate()
        proc.wait()


def run(chat, loadgen, rounds, rate, seconds="5"):
    for r in range(1, rounds + 1):
        proc, addr = start_chat(chat, [])
        result = fanout(loadgen, rate, seconds, [addr], [proc.pid])
        stop(proc)
        print(json.dumps({"rate": int(rate), "round": r, "setup": "single", "result": result}), flush=True)
        redis, port = start_redis()
        a, addr_a = start_chat(chat, ["--redis", f"127.0.0.1:{port}", "--node-id", "a"])
        b, addr_b = start_chat(chat, ["--redis", f"127.0.0.1:{port}", "--node-id", "b"])
        result = fanout(loadgen, rate, seconds, [addr_a, addr_b], [a.pid, b.pid], redis.pid)
        stop(a, b, redis)
        print(json.dumps({"rate": int(rate), "round": r, "setup": "federated", "result": result}), flush=True)


def summary(path):
    runs = [json.loads(line) for line in open(path)]
    for rate in sorted({r["rate"] for r in runs}):
        by = {}
        for r in runs:
            if r["rate"] == rate:
                by.setdefault(r["round"], {})[r["setup"]] = r["result"]

        def med(setup, key):
            return st.median(by[x][setup][key] for x in by)

        print(f"rate {rate}/s/sender ({len(by)} rounds)")
        for setup in ("single", "federated"):
            loss = max(by[x][setup]["loss_pct"] for x in by)
            line = (f"  {setup:10} deliveries/s {med(setup, 'deliveries_per_s'):,.0f}, max loss {loss:.4f}%, "
                    f"server CPU {med(setup, 'server_cpu_pct'):.1f}%, "
                    f"{med(setup, 'server_cpu_us_per_delivery'):.3f} us/delivery, p99 {med(setup, 'lat_p99_us'):,.0f} us")
            if setup == "federated":
                line += (f", redis CPU {med(setup, 'aux_cpu_pct'):.1f}% "
                         f"({med(setup, 'aux_cpu_us_per_delivery'):.3f} us/delivery)")
            print(line)
        for key, what in (("server_cpu_us_per_delivery", "CPU per delivery"), ("lat_p99_us", "p99")):
            rs = [by[x]["federated"][key] / by[x]["single"][key] for x in by]
            print(f"  {what}, federated / single: {st.median(rs):.2f} [{min(rs):.2f}-{max(rs):.2f}]")


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        summary(sys.argv[2])
    else:
        run(*sys.argv[1:3], int(sys.argv[3]), *sys.argv[4:])
