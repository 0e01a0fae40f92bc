#!/usr/bin/env bash
# Reliability and load figures for BENCHMARKS.md: `poststelle bench` (release build) against a
# fresh two-node network on loopback, three runs:
#   1. steady: 5 000 messages, 16 clients;
#   2. overload: 2 000 messages, 128 clients, node a's intake limited to 4 at once (503s);
#   3. chaos: 5 000 messages, 16 clients, at least 5 kill -9 restarts of each node.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gateway
bin=target/release/poststelle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
    local name=$1; shift
    rm -rf "$work/net"
    "$bin" network init "$work/net" >/dev/null
    if [[ $name == overload ]]; then
        sed -i 's/^max_concurrent_intake = .*/max_concurrent_intake = 4/' "$work/net/a/poststelle.toml"
    fi
    echo "== $name: poststelle bench --network NET/network.json --spawn $*"
    "$bin" bench --network "$work/net/network.json" --spawn "$@"
}

run steady --messages 5000 --clients 16
run overload --messages 2000 --clients 128
run chaos --messages 5000 --clients 16 --chaos --kills 5
