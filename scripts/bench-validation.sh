#!/usr/bin/env bash
# Validation throughput for BENCHMARKS.md: `poststelle validate` (release build: pre-scan, adapter
# lookup, libxml2 XSD validation, code lists, header extraction) against `xmllint --noout
# --schema` (the same libxml2, schema validation only) on the same files, in the same run, one
# process and one thread each, so messages per second are per core. Each tool gets the sample
# list repeated REPEAT times in one invocation, so that the schema compiles once for both.
#   XBeteiligung 1.2: the three consistent public samples (kommunal.Initiieren.0401);
#   XJustiz 3.4.1: the public sample (nachricht.gds.uebermittlungSchriftgutobjekte.0005005).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-2000}
xoev=$(cd ../shared/xoev && pwd)
cargo build --release -p gateway >/dev/null 2>&1
bin=target/release/poststelle

bench() {
    local label=$1 manifest=$2 schema=$3; shift 3
    local files=()
    for _ in $(seq "$REPEAT"); do files+=("$@"); done
    local n=${#files[@]}
    local t0 t1 ours theirs
    t0=$(date +%s.%N)
    "$bin" validate --adapters "manifests/$manifest" --xoev-root "$xoev" "${files[@]}" >/dev/null
    t1=$(date +%s.%N)
    ours=$(awk "BEGIN{print $t1 - $t0}")
    t0=$(date +%s.%N)
    xmllint --nonet --noout --schema "$schema" "${files[@]}" 2>/dev/null
    t1=$(date +%s.%N)
    theirs=$(awk "BEGIN{print $t1 - $t0}")
    printf '%-14s %5d msgs  poststelle validate %7.0f msg/s (%.2f s)  xmllint --schema %7.0f msg/s (%.2f s)  ratio %.2f\n' \
        "$label" "$n" "$(awk "BEGIN{print $n / $ours}")" "$ours" "$(awk "BEGIN{print $n / $theirs}")" "$theirs" \
        "$(awk "BEGIN{print $ours / $theirs}")"
}

res=$xoev/xbeteiligung-1.2/tests/res/xmlv14
bench xbeteiligung xbeteiligung-1.2 "$xoev/xbeteiligung-1.2/Resources/xsd/xbeteiligung.xsd" \
    "$res/xbeteiligung-test-kommunal.Initiieren.0401.xml" \
    "$res/xbeteiligung-test-kommunal.Initiieren.0401.gwid-format.xml" \
    "$res/xbeteiligung-test-kommunal.Initiieren.0401.pipe-format.xml"
bench xjustiz xjustiz-3.4.1 "$xoev/xjustiz/3.4.1/xsd/xjustiz_0005_nachrichten_3_0.xsd" \
    "$xoev/xjustiz/3.4.1/examples/xjustiz_nachricht.xml"
