#!/usr/bin/env bash
# Runs the Autobahn WebSocket test suite's cases (through `kosoku`, a Python
# package: `pip install kosoku==0.1.0`, run by scripts/kosoku_shim.py, which fixes
# its compression cases) against twistor's WebSocket, and prints the outcome per
# section: OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED and the rest.
#
#   scripts/autobahn.sh [--client] [--no-deflate] [--out DIR] [--update]
#                       [-- KOSOKU_ARGS...]
#
# By default kosoku drives the ws_echo example (the server role) through all 517
# cases, permessage-deflate on (sections 12 and 13 included). With --client, kosoku
# is the server (`-m fuzzingserver`) and the autobahn_client example (the client
# role) runs every case against it. --no-deflate turns permessage-deflate off (the
# server accepts it no more, the client offers it no more) and leaves sections 12 and
# 13 out. --out keeps the reports (index.json and one page per case) in DIR; by
# default they go to a temporary directory, removed at the end. Arguments after `--`
# go to kosoku (`-i 5.*` to run one section, say).
#
# Every case's outcome (behavior and closing behavior) is compared with
# scripts/autobahn-expected.json (server) or scripts/autobahn-client-expected.json
# (client): all of them on a full run, the cases run otherwise. --update writes the
# outcomes of a full run into that file instead of comparing (review the diff).
#
# Exit status: 0 if no case FAILED (in its behavior or its closing behavior) and
# every case's outcome is the expected one; 1 otherwise; 2 if the suite could not run
# (kosoku missing, the server did not start). CI can call it as it is.

set -euo pipefail

client=0
deflate=1
out=""
update=0
kosoku_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --client) client=1 ;;
        --no-deflate) deflate=0 ;;
        --deflate) deflate=1 ;; # the default; kept for older command lines
        --out) out="$2"; shift ;;
        --update) update=1 ;;
        --) shift; kosoku_args=("$@"); break ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "autobahn.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."

if ! python3 -c 'import kosoku' 2>/dev/null; then
    echo "autobahn.sh: kosoku not found (pip install kosoku==0.1.0)" >&2
    exit 2
fi
# A run is full when kosoku is not told to select cases: all of them are compared.
full=1
{ [ "${#kosoku_args[@]}" -gt 0 ] || [ "$deflate" = 0 ]; } && full=0
if [ "$update" = 1 ] && { [ "$full" = 0 ] || [ "$deflate" = 0 ]; }; then
    echo "autobahn.sh: --update needs a full run (no --no-deflate, no kosoku arguments)" >&2
    exit 2
fi
if [ "$deflate" = 0 ]; then
    kosoku_args+=(-x '12.*' -x '13.*')
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "$out" ] || out="$work/reports"

# Waits up to 10 s for a line of FILE matching sed expression EXPR (which prints the
# address) while process PID lives; prints the address.
wait_for_address() {
    local file=$1 expr=$2 pid=$3 addr=""
    for _ in $(seq 1 100); do
        addr=$(sed -n "$expr" "$file" | head -n 1)
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$addr"
}

start=$(date +%s)
if [ "$client" = 0 ]; then
    expected=scripts/autobahn-expected.json
    cargo build --quiet --release --example ws_echo
    server_args=()
    [ "$deflate" = 0 ] && server_args+=(--no-deflate)
    RUST_LOG=warn target/release/examples/ws_echo --listen 127.0.0.1:0 "${server_args[@]}" \
        >"$work/stdout" 2>"$work/stderr" &
    pids+=($!)
    addr=$(wait_for_address "$work/stdout" 's/^listening on //p' "${pids[0]}")
    if [ -z "$addr" ]; then
        echo "autobahn.sh: ws_echo did not start" >&2
        cat "$work/stderr" >&2
        exit 2
    fi
    echo "autobahn.sh: running the cases against ws_echo on $addr" >&2
    # kosoku's own status counts UNIMPLEMENTED cases as failures: the summary below
    # decides.
    python3 scripts/kosoku_shim.py -o "$out" "${kosoku_args[@]}" "$addr" >&2 || true
else
    expected=scripts/autobahn-client-expected.json
    cargo build --quiet --release --example autobahn_client
    client_args=()
    [ "$deflate" = 0 ] && client_args+=(--no-deflate)
    python3 scripts/kosoku_shim.py -m fuzzingserver -o "$out" "${kosoku_args[@]}" \
        127.0.0.1:0 >"$work/kosoku.out" 2>"$work/kosoku.err" &
    pids+=($!)
    addr=$(wait_for_address "$work/kosoku.err" \
        's/^fuzzingserver listening on ws:\/\/\(.*\)$/\1/p' "${pids[0]}")
    if [ -z "$addr" ]; then
        echo "autobahn.sh: kosoku's fuzzing server did not start" >&2
        cat "$work/kosoku.err" >&2
        exit 2
    fi
    echo "autobahn.sh: running autobahn_client through the cases of kosoku on $addr" >&2
    if ! RUST_LOG=warn target/release/examples/autobahn_client --connect "$addr" \
        "${client_args[@]}" >"$work/client.out"; then
        echo "autobahn.sh: autobahn_client failed" >&2
        tail -n 5 "$work/client.out" >&2
    fi
    # The server ends its run once the client asked it to update the reports; it
    # writes them, then exits.
    wait "${pids[0]}" || true
    pids=()
    cat "$work/kosoku.out" >&2
fi
echo "autobahn.sh: $(( $(date +%s) - start )) s" >&2
if [ ! -f "$out/index.json" ]; then
    echo "autobahn.sh: kosoku wrote no index.json" >&2
    exit 2
fi

python3 - "$out/index.json" "$expected" "$full" "$update" <<'EOF'
import collections, json, sys

index_path, expected_path, full, update = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
index = json.load(open(index_path))
got = {c: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
       for cases in index.values() for c, r in cases.items()}

def case_key(case):
    return [int(part) for part in case.split(".")]

sections = collections.defaultdict(collections.Counter)
failed = []
for case in sorted(got, key=case_key):
    result = got[case]
    sections[case.split(".")[0]][result["behavior"]] += 1
    if "FAILED" in (result["behavior"], result["behaviorClose"]):
        failed.append(f"{case} ({result['behavior']}, close {result['behaviorClose']})")
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

if update:
    with open(expected_path, "w") as f:
        json.dump({c: got[c] for c in sorted(got, key=case_key)}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(got)} cases to {expected_path}")
    sys.exit(1 if failed else 0)

# The expected results (behavior and closing behavior per case, durations ignored, as
# tungstenite's CI compares them): any case that differs fails the run, so a case
# that got worse, or better, is noticed and the file is updated on purpose.
expected = json.load(open(expected_path))
def same(want, have):
    # An INFORMATIONAL case only reports what happened (7.1.6 and 7.13.x time a
    # close against the data still in flight): OK in its place is no change.
    if want is None or have is None:
        return want == have
    if want["behavior"] == "INFORMATIONAL" and have["behavior"] in ("OK", "INFORMATIONAL"):
        return want["behaviorClose"] == have["behaviorClose"]
    return want == have
compared = set(expected) | set(got) if full else set(got)
differs = [f"{c}: expected {expected.get(c)}, got {got.get(c)}"
           for c in sorted(compared, key=case_key) if not same(expected.get(c), got.get(c))]
for line in differs:
    print("DIFFERS:", line)
if not differs:
    print(f"as expected ({len(compared)} cases, {expected_path})")
sys.exit(1 if failed or differs else 0)
EOF
