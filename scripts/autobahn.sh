#!/usr/bin/env bash
# Runs the Autobahn WebSocket test suite's cases (through `kosoku`, a Python
# package: `pip install kosoku`) against the ws_echo example, and prints the outcome
# per section: OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED and the rest.
#
#   scripts/autobahn.sh [--deflate] [--out DIR] [-- KOSOKU_ARGS...]
#
# Without --deflate the server runs with --no-deflate and the compression sections
# (12.*, 13.*) are left out. --out keeps the reports (index.json and one page per
# case) in DIR; by default they go to a temporary directory, removed at the end.
# Arguments after `--` go to kosoku (`-i 5.*` to run one section, say).
#
# Exit status: 0 if no case FAILED (in its behavior or its closing behavior) and,
# without --deflate, every case's outcome is the one in scripts/autobahn-expected.json;
# 1 otherwise; 2 if the suite could not run (kosoku missing, the server did not start).
# CI can call it as it is.

set -euo pipefail

deflate=0
out=""
kosoku_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --deflate) deflate=1 ;;
        --out) out="$2"; shift ;;
        --) shift; kosoku_args=("$@"); break ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "autobahn.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."

kosoku=$(command -v kosoku || true)
if [ -z "$kosoku" ] && [ -x "$HOME/.local/bin/kosoku" ]; then
    kosoku="$HOME/.local/bin/kosoku"
fi
if [ -z "$kosoku" ]; then
    echo "autobahn.sh: kosoku not found (pip install kosoku)" >&2
    exit 2
fi

cargo build --quiet --release --example ws_echo
server_args=()
if [ "$deflate" = 0 ]; then
    server_args+=(--no-deflate)
    kosoku_args+=(-x '12.*' -x '13.*')
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "$out" ] || out="$work/reports"

RUST_LOG=warn target/release/examples/ws_echo --listen 127.0.0.1:0 "${server_args[@]}" \
    >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
addr=""
for _ in $(seq 1 100); do
    addr=$(sed -n 's/^listening on //p' "$work/stdout" | head -n 1)
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "autobahn.sh: ws_echo did not start" >&2
    cat "$work/stderr" >&2
    exit 2
fi

echo "autobahn.sh: running the cases against ws_echo on $addr" >&2
# kosoku's own status counts UNIMPLEMENTED cases as failures: the summary below
# decides.
"$kosoku" -o "$out" "${kosoku_args[@]}" "$addr" >&2 || true
if [ ! -f "$out/index.json" ]; then
    echo "autobahn.sh: kosoku wrote no index.json" >&2
    exit 2
fi

expected=""
[ "$deflate" = 0 ] && expected=scripts/autobahn-expected.json
python3 - "$out/index.json" "$expected" <<'EOF'
import collections, json, sys

index = json.load(open(sys.argv[1]))
# The expected results (behavior and closing behavior per case, durations ignored, as
# tungstenite's CI compares them): any case that differs fails the run, so a case
# that got worse, or better, is noticed and the file is updated on purpose.
expected = json.load(open(sys.argv[2])) if len(sys.argv) > 2 and sys.argv[2] else {}
sections = collections.defaultdict(collections.Counter)
failed = []
for agent, cases in index.items():
    for case, result in cases.items():
        section = case.split(".")[0]
        behavior = result["behavior"]
        sections[section][behavior] += 1
        if "FAILED" in (behavior, result["behaviorClose"]):
            failed.append(f"{case} ({behavior}, close {result['behaviorClose']})")
kinds = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
others = sorted({k for c in sections.values() for k in c} - set(kinds))
print("section " + " ".join(f"{k:>13}" for k in kinds + others))
total = collections.Counter()
for section in sorted(sections, key=int):
    counts = sections[section]
    total.update(counts)
    print(f"{section:>7} " + " ".join(f"{counts[k]:>13}" for k in kinds + others))
print(f"{'all':>7} " + " ".join(f"{total[k]:>13}" for k in kinds + others))
for case in failed:
    print("FAILED:", case)
differs = []
if expected:
    got = {c: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
           for cases in index.values() for c, r in cases.items()}
    def same(want, have):
        # An INFORMATIONAL case only reports what happened (7.1.6 and 7.13.x time a
        # close against the data still in flight): OK in its place is no change.
        if want is None or have is None:
            return want == have
        if want["behavior"] == "INFORMATIONAL" and have["behavior"] in ("OK", "INFORMATIONAL"):
            return want["behaviorClose"] == have["behaviorClose"]
        return want == have
    for case in sorted(set(expected) | set(got)):
        if not same(expected.get(case), got.get(case)):
            differs.append(f"{case}: expected {expected.get(case)}, got {got.get(case)}")
    for line in differs:
        print("DIFFERS:", line)
    if not differs:
        print(f"as expected ({len(expected)} cases, scripts/autobahn-expected.json)")
sys.exit(1 if failed or differs else 0)
EOF
