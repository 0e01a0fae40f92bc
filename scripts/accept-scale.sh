#!/usr/bin/env bash
# The acceptance run of issue 24 (scale-out), on this machine: a two-node network on PostgreSQL
# (`network init --store-url`), three `serve` processes of node a and two of node b
# (`bench --spawn --procs 3,2`), N messages (5000) from 16 clients while `--chaos` kills random
# processes with SIGKILL (at least KILLS of each node's) and restarts them. Meanwhile it reads
# node a's admin status (its live processes) and, through each process of a's own admin
# address, views a payload with a reason (an audited operator action). Afterwards
# `poststelle audit verify --config` of node a checks the node's one audit chain and counts
# its entries by the process that wrote them. Exit status: the bench's (0: nothing lost,
# doubled, unexpected or unended) or the audit check's.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${N:-5000}
KILLS=${KILLS:-5}
STORE_URL=${STORE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
cargo build --release -p gateway >/dev/null 2>&1
bin=$PWD/target/release/poststelle
work=$(mktemp -d)
trap 'kill ${bench:-} 2>/dev/null || true; rm -rf "$work"; drop_schemas' EXIT
drop_schemas
"$bin" network init "$work/net" --store-url "$STORE_URL" >/dev/null
read -r admin token < <(python3 -c 'import json,sys; n=json.load(open(sys.argv[1]))["nodes"][0]; print(n["admin"], n["admin_token"])' "$work/net/network.json")
echo "== poststelle bench --spawn --procs 3,2 --chaos --kills $KILLS --messages $N --clients 16"
"$bin" bench --network "$work/net/network.json" --spawn --procs 3,2 --chaos --kills "$KILLS" \
    --messages "$N" --clients 16 --timeout 1800 > "$work/bench.out" 2> "$work/bench.err" &
bench=$!
most=0
while kill -0 "$bench" 2>/dev/null; do
    sleep 3
    alive=$(curl -s -H "Authorization: Bearer $token" "$admin/admin/api/status" \
        | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["processes"] if p["alive"]))' 2>/dev/null || echo 0)
    if (( alive > most )); then
        most=$alive
        echo "node a's admin status: $alive live processes"
    fi
    # An audited operator action through each process of node a (its own admin address).
    for a in "$admin" $(grep -o 'node a process [0-9]*: admin [^ ]*' "$work/bench.err" | awk '{print $NF}' | sort -u); do
        id=$(curl -s -H "Authorization: Bearer $token" "$a/admin/api/messages?limit=1" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"][0]["id"])' 2>/dev/null) || continue
        curl -s -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -d '{"reason": "acceptance run of issue 24"}' "$a/admin/api/messages/$id/payload" || true
    done
done
rc=0
wait "$bench" || rc=$?
cat "$work/bench.out"
echo "== poststelle audit verify --config a/poststelle.toml"
"$bin" audit verify --config "$work/net/a/poststelle.toml" || rc=$?
exit "$rc"
