#!/usr/bin/env bash
# Scale-out figures for BENCHMARKS.md (issue 24): one logical node as 1, 2 and 3 processes, per
# node of a two-node network on one PostgreSQL, everything (both nodes' processes, the load,
# PostgreSQL) on this machine's cores. For each shape, `poststelle bench --spawn --procs P,P`
# in a closed loop (16 clients) reports throughput and latency and the nodes' CPU per message
# (every process of the node, from when all were ready); beside it PostgreSQL's committed
# transactions and CPU per message. PROCS="1,1 2,2 3,3" and N=3000 by default; CHAOS=1 adds
# --chaos (kill -9 of random processes during the run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${N:-3000}
PROCS=${PROCS:-"1,1 2,2 3,3"}
STORE_URL=${STORE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
cargo build --release -p gateway >/dev/null 2>&1
bin=$PWD/target/release/poststelle
work=$(mktemp -d)
trap 'rm -rf "$work"; drop_schemas' EXIT
echo "cores: $(nproc); messages per run: $N; openssl speed rsa3072 sign/s (one core): $(openssl speed -seconds 3 rsa3072 2>/dev/null | awk '/^rsa 3072 bits/ {print $6}')"
for procs in $PROCS; do
    drop_schemas
    rm -rf "$work/net"
    "$bin" network init "$work/net" --store-url "$STORE_URL" >/dev/null
    x0=$(pg_xacts); p0=$(cpu_with_ended_children $(pg_pids))
    out=$("$bin" bench --network "$work/net/network.json" --spawn --procs "$procs" ${CHAOS:+--chaos} \
        --messages "$N" --clients 16 --timeout 1200 --json) || true
    x1=$(pg_xacts); p1=$(cpu_with_ended_children $(pg_pids))
    python3 - "$procs" "$out" "$N" "$(( x1 - x0 ))" "$p0" "$p1" <<'PY'
import json, sys
procs, r, n, xacts, p0, p1 = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
cpu = r.get("node_cpu_ms_per_message", {})
print("procs %s: %.0f msg/s end to end, p50 %.0f ms p99 %.0f ms; node CPU/msg a %.2f ms, b %.2f ms; "
      "PostgreSQL %.1f transactions/msg, %.2f ms CPU/msg; kills %s; lost %d duplicated %d unexpected %d not ended %d"
      % (procs, r["end_to_end_per_second"], r["latency_ms"]["p50"], r["latency_ms"]["p99"],
         cpu.get("a", 0), cpu.get("b", 0), xacts / n, 1000 * (p1 - p0) / n, r.get("kills", {}),
         r["lost"], r["duplicated"], r["unexpected"], r["not_ended"]))
PY
done
