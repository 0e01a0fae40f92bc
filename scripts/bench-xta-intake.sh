#!/usr/bin/env bash
# XTA 2 intake next to REST intake, same run, for BENCHMARKS.md: a fresh two-node network
# (release build), both nodes and the load on this machine, then `poststelle bench` twice with
# the same demo message (fresh UUIDs) and the same clients:
#   1. --via rest: POST /v1/messages (202 after the commit);
#   2. --via xta: createMessageId, then sendMessage with the message as an MTOM part (200 after
#      the commit) — two requests per message, as an XTA client makes them.
# Each run waits until node b's client has fetched everything, so the second starts idle.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
CLIENTS=${CLIENTS:-16}
cargo build --release -p gateway >/dev/null 2>&1
bin=$PWD/target/release/poststelle
work=$(mktemp -d)
"$bin" network init "$work/net" >/dev/null
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for node in a b; do
    (cd "$work/net/$node" && POSTSTELLE_LOG=error "$bin" serve --config poststelle.toml) &
    pids+=($!)
done
# `poststelle bench` waits until both nodes answer /readyz.
for via in rest xta; do
    echo "== poststelle bench --via $via --messages $N --clients $CLIENTS"
    "$bin" bench --network "$work/net/network.json" --via "$via" --messages "$N" --clients "$CLIENTS" --timeout 300
done
