#!/usr/bin/env bash
# One large attachment through both nodes, for BENCHMARKS.md (issue 27): a fresh two-node
# network (release build) on this machine; a message with one attachment of SIZE_MB MiB
# (default 1024) of random bytes, posted by curl as multipart/form-data to a, fetched by b's
# client from its inbox and compared by SHA-256. Prints the time and MB/s of each leg
# (upload to a; a → b: from a's 202 until the message is in b's inbox, i.e. sealed, sent,
# checked, received, decrypted and checked again; download from b), the CPU of both nodes, each
# node's peak resident memory (VmHWM), and `openssl speed` for AES-256-GCM and SHA-256 from the
# same run beside them, and the disk's rate for an fsynced write of the attachment (dd).
# RESUME=1: b is killed (SIGKILL) once it holds half of the encrypted stream, restarted, and
# the transfer resumes; prints how many bytes a sent after the restart.
# BIN=path runs that binary instead of this tree's release build. LOG=info and LOGS=folder keep
# the nodes' logs (with their timestamps per stage) in that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SIZE_MB=${SIZE_MB:-1024}
RESUME=${RESUME:-0}
bin=$(release_bin)
start_scratch
"$bin" network init "$work/net" >/dev/null
net=$work/net/network.json
field() { python3 -c 'import json,sys; n=json.load(open(sys.argv[1]))["nodes"][int(sys.argv[2])]; print(eval(sys.argv[3]))' "$net" "$1" "$2"; }
start_node() {
    (cd "$work/net/$1" && POSTSTELLE_LOG=${LOG:-warn} exec "$bin" serve --config poststelle.toml >/dev/null 2>>"$work/$1.log") &
    echo $!
}
wait_ready() {
    for _ in $(seq 300); do curl -sf "$(field "$1" 'n["admin"]')/readyz" >/dev/null && return 0; sleep 0.2; done
    echo "node $1 did not become ready:" >&2; for f in "$work"/*.log; do tail -n 5 "$f" >&2; done; exit 1
}
pa=$(start_node a); pids+=("$pa")
pb=$(start_node b); pids+=("$pb")
wait_ready 0; wait_ready 1
api_a=$(field 0 'n["api"]'); tok_a=$(field 0 'n["clients"][0]["token"]'); ca_a=$(field 0 'n["ca"]')
api_b=$(field 1 'n["api"]'); tok_b=$(field 1 'n["clients"][0]["token"]'); ca_b=$(field 1 'n["ca"]')
admin_a=$(field 0 'n["admin"]')

python3 - "$work/message.xml" <<'EOF'
import pathlib, sys, uuid
t = pathlib.Path("fixtures/messages/xumzug/valid/rueckmeldung-erika-mustermann.xml").read_text()
pathlib.Path(sys.argv[1]).write_text(t.replace("dfef3ee4-72a5-465b-9373-a31f18e85d70", str(uuid.uuid4())))
EOF
head -c "${SIZE_MB}M" /dev/urandom >"$work/big.bin"
want=$(sha256sum "$work/big.bin" | cut -d' ' -f1)
bytes=$((SIZE_MB * 1024 * 1024))
# The encrypted stream: a 15-byte header and a 16-byte tag per 64 KiB segment.
stream=$((15 + bytes + 16 * ((bytes + 65535) / 65536)))
sync

cpu0=$(cpu "$pa" "$pb")
t0=$(date +%s.%N)
answer=$(curl -sS --cacert "$ca_a" -H "Authorization: Bearer $tok_a" \
    -F "message=@$work/message.xml;type=application/xml" \
    -F "attachment=@$work/big.bin;type=application/octet-stream;filename=big.bin" "$api_a/v1/messages")
t1=$(date +%s.%N)
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$answer") || { echo "upload refused: $answer" >&2; exit 1; }
held=0
if [[ $RESUME == 1 ]]; then
    part="$work/net/b/data/attachments/in/a/$id/0.sealed.part"
    until [[ -f $part ]] && (($(stat -c %s "$part") >= stream / 2)); do sleep 0.02; done
    kill -9 "$pb"
    while [[ -e /proc/$pb ]]; do sleep 0.05; done
    held=$(stat -c %s "$part")
    pb=$(start_node b); pids+=("$pb")
    wait_ready 1
fi
# A long poll (answered as soon as the message is opened), so that the wait takes no CPU
# from the nodes: polling with a process per look took up to a core of the two.
inbox() { curl -sf --cacert "$ca_b" -H "Authorization: Bearer $tok_b" "$api_b/v1/inbox?wait=60" | python3 -c 'import json,sys; m=json.load(sys.stdin)["messages"]; print(m[0]["id"] if m else "")'; }
until [[ -n $(inbox) ]]; do :; done
t2=$(date +%s.%N)
got_id=$(inbox)
curl -sf --cacert "$ca_b" -H "Authorization: Bearer $tok_b" -o "$work/got.bin" "$api_b/v1/inbox/$got_id/attachments/0"
t3=$(date +%s.%N)
cpu1=$(cpu "$pa" "$pb")
got=$(sha256sum "$work/got.bin" | cut -d' ' -f1)
[[ $got == "$want" ]] || { echo "the attachment arrived changed" >&2; exit 1; }
hwm() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
hwm_a=$(hwm "$pa"); hwm_b=$(hwm "$pb")
sent=$(curl -sf "$admin_a/metrics" | awk '/^poststelle_attachment_bytes_total\{.*direction="sent"/ {print $NF}')
gcm=$(openssl speed -evp aes-256-gcm -bytes 65536 -seconds 2 2>/dev/null | awk '/^AES-256-GCM|^aes-256-gcm/ {print $NF}')
sha=$(openssl speed -bytes 65536 -seconds 2 sha256 2>/dev/null | awk '/^sha256/ {print $NF}')
# The disk in the same run: the attachment copied (from the page cache) and fsynced, as each
# node's durable write of it is.
rm -f "$work/got.bin"
sync
d0=$(date +%s.%N)
dd if="$work/big.bin" of="$work/disk.bin" bs=1M conv=fsync status=none
d1=$(date +%s.%N)
rm -f "$work/disk.bin"
awk -v mb="$SIZE_MB" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" -v ha="$hwm_a" -v hb="$hwm_b" \
    -v c0="$cpu0" -v c1="$cpu1" -v gcm="$gcm" -v sha="$sha" -v d0="$d0" -v d1="$d1" 'BEGIN {
    m = mb * 1.048576
    printf "%d MiB attachment: upload to a %.1f s (%.0f MB/s); a -> b until in b'"'"'s inbox %.1f s (%.0f MB/s); download from b %.1f s (%.0f MB/s); end to end %.1f s (%.0f MB/s)\n",
        mb, t1 - t0, m / (t1 - t0), t2 - t1, m / (t2 - t1), t3 - t2, m / (t3 - t2), t3 - t0, m / (t3 - t0)
    printf "CPU of both nodes %.1f s; peak resident memory (VmHWM): a %.1f MiB, b %.1f MiB\n", c1 - c0, ha, hb
    printf "openssl speed (64 KiB blocks, this run): aes-256-gcm %.0f MB/s, sha256 %.0f MB/s\n", gcm / 1000, sha / 1000
    printf "the disk (this run): the attachment written and fsynced by dd at %.0f MB/s; a -> b writes it durably three times (a'"'"'s stream, b'"'"'s stream, b'"'"'s plaintext): %.1f s at that rate\n",
        m / (d1 - d0), 3 * (d1 - d0) }'
[[ -n ${LOGS:-} ]] && cp "$work"/*.log "$LOGS"/
if [[ $RESUME == 1 ]]; then
    echo "resume: b killed holding $held of $stream stream bytes; a sent $sent bytes after b's restart (the rest: $((stream - held)))"
    echo "(b's VmHWM is its restarted process's)"
fi
