#!/usr/bin/env bash
# Drop-folder throughput, one run, for BENCHMARKS.md (issue 28): a fresh two-node network
# (`network init --file-drop`, release build) on this machine; N demo messages, prepared beside
# the folder, renamed into a's `out/` at once (as legacy systems finish files); then
#   pickup:    until `out/` is empty (every file committed and moved to `sent/`),
#   in/:       until b's `in/` holds all N (each durable, `delivered` committed),
#   status:    until every `status/<id>.json` at a says `delivered` (b's notice came back);
# files per second for each, and the CPU of both nodes per file.
# BIN=path runs that binary instead of this tree's release build; STORE_URL=postgres://… puts
# both stores in that PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${N:-2000}
bin=$(release_bin)
start_scratch
drop_schemas
"$bin" network init "$work/net" --file-drop ${STORE_URL:+--store-url "$STORE_URL"} >/dev/null
for node in a b; do
    (cd "$work/net/$node" && POSTSTELLE_LOG=error exec "$bin" serve --config poststelle.toml) &
    pids+=($!)
done
a=$work/net/a/drop
b=$work/net/b/drop
# Messages from a's authority to b's (the demo fixture's direction), each with its own UUID.
prepare() {
    python3 - "$1" "$2" "$3" <<'EOF'
import pathlib, sys, uuid
template = pathlib.Path("fixtures/messages/xumzug/valid/rueckmeldung-erika-mustermann.xml").read_text()
out, prefix, n = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
for i in range(n):
    text = template.replace("dfef3ee4-72a5-465b-9373-a31f18e85d70", str(uuid.uuid4()))
    (out / f"{prefix}{i:06}.xml").write_text(text)
EOF
}
# Waits until `test` (a python expression over `count(folder, suffix)` and `delivered()`)
# holds; prints the seconds since $t0.
wait_until() {
    python3 - "$1" "$a" "$b" "$t0" <<'EOF'
import json, os, sys, time
cond, a, b, t0 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def count(folder, suffix):
    return sum(1 for n in os.listdir(folder) if n.endswith(suffix) and not n.startswith("."))
def delivered():
    n = 0
    for f in os.listdir(f"{a}/status"):
        try:
            n += json.load(open(f"{a}/status/{f}"))["status"] == "delivered"
        except (OSError, ValueError):
            pass
    return n
deadline = time.time() + 900
while not eval(cond):
    if time.time() > deadline:
        sys.exit("timed out: " + cond)
    time.sleep(0.05)
print("%.2f" % (time.time() - t0))
EOF
}
# Warm-up: both nodes up (the first files wait until a answers), schemas and connections warm.
prepare "$work/stage" w 20
ready=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][1]["admin"])' "$work/net/network.json")/readyz
for _ in $(seq 300); do curl -sf "$ready" >/dev/null && break; sleep 0.2; done
curl -sf "$ready" >/dev/null || { echo "node b did not become ready" >&2; exit 1; }
t0=$(date +%s.%N)
mv "$work/stage"/w*.xml "$a/out/"
wait_until "delivered() == 20" >/dev/null
prepare "$work/stage" m "$N"
cpu0=$(cpu "${pids[@]}"); cpua0=$(cpu "${pids[0]}")
t0=$(date +%s.%N)
mv "$work/stage"/m*.xml "$a/out/"
pickup=$(wait_until "count('$a/out', '.xml') == 0")
inbox=$(wait_until "count('$b/in', '.xml') == $N + 20")
status=$(wait_until "delivered() == $N + 20")
cpu1=$(cpu "${pids[@]}"); cpua1=$(cpu "${pids[0]}")
rejected=$(ls "$a/rejected" | wc -l)
awk -v n="$N" -v p="$pickup" -v i="$inbox" -v s="$status" -v c0="$cpu0" -v c1="$cpu1" -v r="$rejected" -v a0="$cpua0" -v a1="$cpua1" 'BEGIN {
    printf "%d files: pickup %.1f s (%.0f files/s), in b'"'"'s in/ %.1f s (%.0f files/s), all delivered at a %.1f s (%.0f files/s); CPU of both nodes per file %.2f ms (a %.2f, b %.2f); rejected %d\n",
        n, p, n / p, i, n / i, s, n / s, 1000 * (c1 - c0) / n, 1000 * (a1 - a0) / n, 1000 * (c1 - c0 - a1 + a0) / n, r }'
