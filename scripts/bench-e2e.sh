#!/usr/bin/env bash
# End-to-end throughput and latency next to the RSA limit, one run, for BENCHMARKS.md (issue 15):
#   1. `openssl speed rsa3072` on this machine: private-key operations per second per core; the
#      physical limit is 2 cores × that / 5 (each message costs five RSA-3072 private-key
#      operations: content and envelope signatures, OAEP unwrap, receipt and notice signatures);
#   2. a fresh two-node network (release build), both nodes and the load on these 2 cores;
#   3. closed loop: `poststelle bench` with 16 clients, as fast as answered → the maximum rate;
#   4. open loop at half that rate (`--rate`, latency from each message's scheduled time,
#      receiving client polling every 5 ms) → p50 / p99 submit → fetched by b's client;
#   5. a backlog: BACKLOG (default 14 000) messages submitted as fast as a accepts them, so
#      that about 10 000 are in flight at once (accepted, not yet fetched at b), with each
#      node's resident memory sampled every 0.2 s (BACKLOG=0 skips it);
#   6. the time per stage from both nodes' /metrics (poststelle_job_seconds, intake_seconds);
#   7. issue 25's four goals from these figures: CPU per message against the five private-key
#      operations, throughput against the limit, the open loop's p99, memory with the backlog.
#      The load generator's own CPU per message (the closed loop's `poststelle bench`) is
#      printed beside the nodes': it shares the cores.
# STORE_URL=postgres://… puts both nodes' stores in that PostgreSQL (schemas poststelle_a and
# poststelle_b, dropped before and after the run); unset: SQLite in each data folder. With
# PostgreSQL the closed loop also reports the database's committed transactions per message and
# the CPU time of the PostgreSQL processes per message (beside the nodes'); NOTIFY=off disables
# the job trigger's notifications, to measure what they cost. KEY_TYPE=ec makes the network on
# EC P-256 keys (ECDSA, ECDH-ES) instead of RSA-3072. LONG_POLL=1 makes the receiving client
# long-poll its inbox (`GET /v1/inbox?wait=1`) instead of polling it. FETCHERS=K (default 8): the
# receiving client of the closed and open loops fetches and acknowledges K messages of each inbox
# listing at a time (one at a time, 2 ms a message, it bounded the end-to-end rate); in the
# backlog it fetches BACKLOG_FETCHERS (default 1) at a time, so that the backlog builds up.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${N:-3000}
FETCHERS=${FETCHERS:-8}
BACKLOG_FETCHERS=${BACKLOG_FETCHERS:-1}
# BIN=path runs that binary instead of this tree's release build (a before/after comparison).
bin=$(release_bin)
echo "== openssl speed -seconds 5 rsa3072 (one core)"
ops=$(openssl speed -seconds 5 rsa3072 2>/dev/null | awk '/^rsa 3072 bits/ {print $6}')
limit=$(awk -v o="$ops" 'BEGIN {printf "%.0f", 2 * o / 5}')
echo "rsa3072 sign/s per core: $ops; limit 2 x $ops / 5 = $limit messages/s"
start_scratch
drop_schemas
"$bin" network init "$work/net" ${STORE_URL:+--store-url "$STORE_URL"} ${KEY_TYPE:+--key-type "$KEY_TYPE"} >/dev/null
# Optional overrides of [relay] settings for both nodes, e.g. RELAY="workers = 8
# per_partner_concurrency = 8".
if [[ -n ${RELAY:-} ]]; then
    while IFS= read -r line; do
        key=${line%% =*}
        sed -i "s/^$key = .*/$line/" "$work/net/a/poststelle.toml" "$work/net/b/poststelle.toml"
    done <<< "$RELAY"
fi
for node in a b; do
    (cd "$work/net/$node" && POSTSTELLE_LOG=error exec "$bin" serve --config poststelle.toml) &
    pids+=($!)
done
pg_syncs() { psql "$STORE_URL" -Atc "SELECT wal_sync FROM pg_stat_wal"; }
# TCP segments the nodes' pooled connections sent to the database: about one per round trip.
pg_addr=$(python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print("%s:%d" % (p.hostname or "127.0.0.1", p.port or 5432))' "${STORE_URL:-postgres://x}")
pg_segs() { ss -tinH dst "$pg_addr" | grep -o 'segs_out:[0-9]*' | awk -F: '{s += $2} END {print s + 0}'; }
# `poststelle bench` waits until both nodes answer /readyz.
if [[ -n ${STORE_URL:-} ]]; then
    "$bin" bench --network "$work/net/network.json" --messages 16 --clients 4 --timeout 120 >/dev/null
    if [[ ${NOTIFY:-on} == off ]]; then
        psql "$STORE_URL" -qc "ALTER TABLE poststelle_a.jobs DISABLE TRIGGER jobs_notify; ALTER TABLE poststelle_b.jobs DISABLE TRIGGER jobs_notify"
    fi
    xacts0=$(pg_xacts); syncs0=$(pg_syncs); segs0=$(pg_segs); pgcpu0=$(cpu $(pg_pids))
fi
nodecpu0=$(cpu "${pids[@]}")
writes0=$(writes "${pids[@]}")
# The load generator's CPU: what this shell's ended children used (the bench, once waited for).
loadcpu0=$(cpu_with_ended_children $$)
echo "== closed loop: poststelle bench --messages $N --clients 16 --fetchers $FETCHERS"
out=$("$bin" bench --network "$work/net/network.json" --messages "$N" --clients 16 --fetchers "$FETCHERS" --timeout 600 ${LONG_POLL:+--long-poll} --json)
nodecpu1=$(cpu "${pids[@]}")
writes1=$(writes "${pids[@]}")
loadcpu1=$(cpu_with_ended_children $$)
node_ms=$(awk -v n="$N" -v c0="$nodecpu0" -v c1="$nodecpu1" 'BEGIN {printf "%.2f", 1000 * (c1 - c0) / n}')
load_ms=$(awk -v n="$N" -v c0="$loadcpu0" -v c1="$loadcpu1" 'BEGIN {printf "%.2f", 1000 * (c1 - c0) / n}')
echo "CPU of both nodes per message: $node_ms ms; of the load generator: $load_ms ms"
# What both nodes wrote per message: WAL frames (SQLite), sockets, files (/proc/PID/io).
awk -v n="$N" -v w0="$writes0" -v w1="$writes1" 'BEGIN {split(w0, a, " "); split(w1, b, " ");
    printf "written by both nodes per message: %.0f KiB in %.0f write calls (WAL frames, sockets, files)\n", (b[1] - a[1]) / 1024 / n, (b[2] - a[2]) / n}'
if [[ -n ${STORE_URL:-} ]]; then
    xacts1=$(pg_xacts); syncs1=$(pg_syncs); segs1=$(pg_segs); pgcpu1=$(cpu $(pg_pids))
    awk -v n="$N" -v x="$(( xacts1 - xacts0 ))" -v s="$(( syncs1 - syncs0 ))" -v r="$(( segs1 - segs0 ))" -v p0="$pgcpu0" -v p1="$pgcpu1" -v c0="$nodecpu0" -v c1="$nodecpu1" -v notify="${NOTIFY:-on}" \
        'BEGIN {printf "PostgreSQL (notify %s), per message: %.1f transactions, %.1f WAL syncs, %.0f round trips (segments sent); CPU: PostgreSQL %.2f ms, both nodes %.2f ms\n", notify, x / n, s / n, r / n, 1000 * (p1 - p0) / n, 1000 * (c1 - c0) / n}'
    echo "job tables after the run (live rows, dead rows, autovacuum runs):"
    psql "$STORE_URL" -Atc "SELECT schemaname || '.jobs', n_live_tup, n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'jobs' AND schemaname IN ('poststelle_a', 'poststelle_b') ORDER BY 1"
fi
max=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["end_to_end_per_second"]))' "$out")
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("intake %.0f/s, end to end %.0f/s (%.0f %% of the limit %s/s), lost %d duplicated %d" % (r["intake_per_second"], r["end_to_end_per_second"], 100*r["end_to_end_per_second"]/float(sys.argv[2]), sys.argv[2], r["lost"], r["duplicated"]))' "$out" "$limit"
half=$(( max / 2 ))
echo "== open loop at half the maximum: poststelle bench --rate $half --messages $(( half * 30 )) --fetchers $FETCHERS --poll-ms 5"
open=$("$bin" bench --network "$work/net/network.json" --rate "$half" --messages $(( half * 30 )) --clients 16 --fetchers "$FETCHERS" --poll-ms 5 ${LONG_POLL:+--long-poll} --timeout 600 --json)
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); l=r["latency_ms"]; print("%d/%d delivered at %.0f/s; latency submit → fetched: p50 %.0f ms  p90 %.0f ms  p99 %.0f ms  max %.0f ms; lost %d duplicated %d" % (r["delivered"], r["accepted"], r["end_to_end_per_second"], l["p50"], l["p90"], l["p99"], l["max"], r["lost"], r["duplicated"]))' "$open"
# Where the slowest message of the open loop spent its time: its timeline at both nodes (admin
# API), as offsets from its acceptance at a, beside its latency from the scheduled submit.
python3 - "$open" "$work/net/network.json" <<'PY'
import datetime, json, sys, urllib.request
r, net = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
if r.get("slowest"):
    s = r["slowest"][0]
    def timeline(node, i):
        req = urllib.request.Request(node["admin"] + "/admin/api/messages/" + i, headers={"Authorization": "Bearer " + node["admin_token"]})
        return [(e["status"], datetime.datetime.fromisoformat(e["at"].replace("Z", "+00:00"))) for e in json.load(urllib.request.urlopen(req))["timeline"]]
    a, b = (timeline(n, i) for n, i in zip(net["nodes"], (s["sender_id"], s["receiver_id"])))
    t0 = a[0][1]
    steps = ", ".join("%s %s %+.0f ms" % (n, st, (t - t0).total_seconds() * 1000) for n, tl in (("a", a), ("b", b)) for st, t in tl)
    print("slowest of the open loop: %.0f ms from its scheduled submit; after a accepted it: %s" % (s["ms"], steps))
PY
BACKLOG=${BACKLOG:-14000}
if (( BACKLOG > 0 )); then
    echo "== backlog: poststelle bench --messages $BACKLOG --clients 16 --fetchers $BACKLOG_FETCHERS (resident memory sampled every 0.2 s)"
    # VmRSS of each node in KiB before, then one line per sample.
    rss_line() {
        local p k v _
        for p in "${pids[@]}"; do
            while read -r k v _; do [[ $k == VmRSS: ]] && printf '%s ' "$v"; done < "/proc/$p/status"
        done
        echo
    }
    rss_before=$(rss_line)
    (while :; do rss_line; sleep 0.2; done) > "$work/rss" &
    sampler=$!
    backlog=$("$bin" bench --network "$work/net/network.json" --messages "$BACKLOG" --clients 16 --fetchers "$BACKLOG_FETCHERS" --timeout 1200 ${LONG_POLL:+--long-poll} --json)
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    rss_after=$(rss_line)
    memory=$(python3 - "$backlog" "$work/rss" "$rss_before" "$rss_after" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
rows = [list(map(int, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 2]
before, after = (list(map(int, a.split())) for a in sys.argv[3:5])
peak = [max(row[i] for row in rows) for i in range(2)]
print(json.dumps({"peak_in_flight": r["peak_in_flight"], "lost": r["lost"], "duplicated": r["duplicated"],
                  "rate": r["end_to_end_per_second"], "mib": {n: [before[i] / 1024, peak[i] / 1024, after[i] / 1024] for i, n in enumerate("ab")}}))
PY
)
    python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print("peak in flight %d (%.0f/s end to end), lost %d duplicated %d; resident memory before / peak / after: %s" % (m["peak_in_flight"], m["rate"], m["lost"], m["duplicated"], ", ".join("%s %.0f / %.0f / %.0f MiB" % (n, *v) for n, v in m["mib"].items())))' "$memory"
fi
echo "== time per stage (mean over every run above, from /metrics)"
python3 - "$work/net/network.json" <<'PY'
import json, re, sys, urllib.request
net = json.load(open(sys.argv[1]))
for n in net["nodes"]:
    text = urllib.request.urlopen(n["admin"] + "/metrics").read().decode()
    sums, counts = {}, {}
    for line in text.splitlines():
        m = re.match(r'poststelle_(job|intake)_seconds_(sum|count)(\{[^}]*\})? ([0-9.e+-]+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        key = labels.get("kind", "intake") + ("" if labels.get("outcome", "done") == "done" else "/" + labels["outcome"])
        (sums if m.group(2) == "sum" else counts)[key] = float(m.group(4))
    parts = ["%s %.1f ms x %d" % (k, 1000 * sums[k] / counts[k], counts[k]) for k in sorted(sums) if counts.get(k)]
    print("node %s: %s" % (n["name"], ", ".join(parts)))
PY
echo "== issue 25's goals from this run"
python3 - "$ops" "$limit" "$node_ms" "$load_ms" "$out" "$open" "${memory:-null}" "${KEY_TYPE:-rsa}" <<'PY'
import json, sys
ops, limit, node_ms, load_ms = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
closed, open_, memory, keys = json.loads(sys.argv[5]), json.loads(sys.argv[6]), json.loads(sys.argv[7]), sys.argv[8]
verdict = lambda ok: "met" if ok else "not met"
private = 5 * 1000 / ops
if keys == "rsa":
    print("1. CPU per message %.2f ms = %.2f x the five private-key operations (%.2f ms): goal <= 1.25 x, %s"
          % (node_ms, node_ms / private, private, verdict(node_ms <= 1.25 * private)))
    rate = closed["end_to_end_per_second"]
    print("2. %.0f messages/s end to end = %.0f %% of the RSA-3072 limit %.0f/s: goal >= 80 %%, %s (load generator %.2f ms CPU per message)"
          % (rate, 100 * rate / limit, limit, verdict(rate >= 0.8 * limit), load_ms))
else:
    print("1./2. (defined for RSA-3072) %s keys: CPU per message %.2f ms, %.0f messages/s end to end, load generator %.2f ms CPU per message"
          % (keys, node_ms, closed["end_to_end_per_second"], load_ms))
p99 = open_["latency_ms"]["p99"]
print("3. open loop at %.0f/s: p99 submit -> fetched %.0f ms: goal < 50 ms, %s" % (open_["end_to_end_per_second"], p99, verdict(p99 < 50)))
if memory:
    peak = max(v[1] for v in memory["mib"].values())
    print("4. peak in flight %d, highest resident memory of a node %.0f MiB: goal < 64 MiB with 10 000 in flight, %s"
          % (memory["peak_in_flight"], peak, verdict(peak < 64 and memory["peak_in_flight"] >= 10000)))
else:
    print("4. not measured (BACKLOG=0)")
PY
