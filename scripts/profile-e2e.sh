#!/usr/bin/env bash
# Where the nodes' CPU goes (issue 25): a fresh two-node network (release build, SQLite; RSA-3072,
# or EC P-256 with KEY_TYPE=ec), a closed-loop run of N messages from 16 clients, and `perf
# record` (sampling; CALLGRAPH=1 adds DWARF call graphs, for a build with
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only, and writes inclusive shares to $REPORT) of
# both node processes during it. Prints the nodes' CPU per message, the share of each library
# (DSO: libcrypto, libxml2, the binary itself — our code, SQLite and the Rust crates are linked
# into it —, libc, the kernel) and the top symbols, which the per-stage times from /metrics
# (scripts/bench-e2e.sh) put in context. FETCHERS=K as in scripts/bench-e2e.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${N:-2000}
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 2; }
bin=$(release_bin)
start_scratch
"$bin" network init "$work/net" ${KEY_TYPE:+--key-type "$KEY_TYPE"} >/dev/null
for node in a b; do
    (cd "$work/net/$node" && POSTSTELLE_LOG=error exec "$bin" serve --config poststelle.toml) &
    pids+=($!)
done
# Warm-up (schemas compiled, connections open); `bench` waits until both nodes are ready.
"$bin" bench --network "$work/net/network.json" --messages 32 --clients 4 --timeout 120 >/dev/null
c0=$(cpu "${pids[@]}")
perf record -q -F "${FREQ:-997}" ${CALLGRAPH:+--call-graph dwarf,16384} -o "$work/perf.data" -p "$(IFS=,; echo "${pids[*]}")" 2>/dev/null &
perf_pid=$!
sleep 1
out=$("$bin" bench --network "$work/net/network.json" --messages "$N" --clients 16 --fetchers "${FETCHERS:-1}" --timeout 600 --json)
kill -INT "$perf_pid"
wait "$perf_pid" 2>/dev/null || true
c1=$(cpu "${pids[@]}")
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("keys %s: %d messages, %.0f/s end to end, lost %d duplicated %d" % (sys.argv[2], r["delivered"], r["end_to_end_per_second"], r["lost"], r["duplicated"]))' "$out" "${KEY_TYPE:-rsa}"
awk -v n="$N" -v c0="$c0" -v c1="$c1" 'BEGIN {printf "CPU of both nodes per message: %.2f ms\n", 1000 * (c1 - c0) / n}'
# (`head` closes the pipes early: no pipefail from here on.)
set +o pipefail
echo "== share of the nodes' samples by library"
perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15
if [[ -n ${CALLGRAPH:-} ]]; then
    # Inclusive shares (a function with everything it calls), for the stages and our code.
    perf report -i "$work/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' > "${REPORT:-/tmp/profile-children.txt}"
    echo "inclusive shares written to ${REPORT:-/tmp/profile-children.txt}"
    # PERF_DATA=path keeps the recording, for `perf report -i path -G --symbol-filter=…`.
    [[ -z ${PERF_DATA:-} ]] || cp "$work/perf.data" "$PERF_DATA"
fi
echo "== top symbols"
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
