#!/usr/bin/env bash
# AMQP intake next to HTTP intake, same run, for BENCHMARKS.md: a fresh two-node network on the
# local RabbitMQ (release build), then
#   1. HTTP: `poststelle bench` with 16 clients and N messages against the running nodes;
#   2. AMQP: scripts/bench-amqp-intake.py publishes N messages to node a's intake queue and
#      times until node a has answered every one (its reply follows the durable commit).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
cargo build --release -p gateway >/dev/null 2>&1
bin=$PWD/target/release/poststelle
work=$(mktemp -d)
"$bin" network init "$work/net" --amqp "amqp://guest:guest@127.0.0.1:5672/%2f" >/dev/null
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    python3 tests/amqp/client.py cleanup "$work/net/network.json" >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for node in a b; do
    (cd "$work/net/$node" && POSTSTELLE_LOG=error "$bin" serve --config poststelle.toml) &
    pids+=($!)
done
sleep 3
# Node b's client takes its inbox from a queue here, so `bench`'s HTTP receiving client sees
# nothing: only its intake figure counts (and it stops waiting after --timeout).
echo "== HTTP: poststelle bench --messages $N --clients 16"
"$bin" bench --network "$work/net/network.json" --messages "$N" --clients 16 --timeout 20 | grep '^bench:' || true
echo "== AMQP: scripts/bench-amqp-intake.py $N"
python3 scripts/bench-amqp-intake.py "$work/net/network.json" fixtures/messages/xumzug/valid/rueckmeldung-erika-mustermann.xml "$N"
