#!/usr/bin/env bash
# Throughput of the watch matching core (scan_file) against `grep -c -E` on a 1 GiB log with the
# same patterns. Output goes to a file, not /dev/null: GNU grep stops at the first match when its
# output is /dev/null, which would time nothing. Prints lines/s for both, their ratio, and peak RSS. Needs python3, GNU time
# (Debian package `time`); uses hyperfine when present. SIZE=bytes overrides the log size.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-$((1 << 30))}
PATTERN='ERROR|panicked'
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

cargo build --quiet --release --example watch_bench
BIN="$CARGO_TARGET_DIR/release/examples/watch_bench"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/app.log"
python3 bench/watch/gen.py "$LOG" "$SIZE"
LINES=$(wc -l < "$LOG")
echo "log: $(du -h "$LOG" | cut -f1), $LINES lines"

# Both must agree before their speed means anything.
GREP_COUNT=$(grep -c -E "$PATTERN" "$LOG")
read -r OUR_LINES OUR_COUNT < <("$BIN" "$LOG" ERROR panicked)
echo "grep -c: $GREP_COUNT matching lines; scan_file: $OUR_COUNT of $OUR_LINES lines"
[ "$GREP_COUNT" = "$OUR_COUNT" ] && [ "$LINES" = "$OUR_LINES" ] || { echo "counts differ"; exit 1; }

seconds() { # mean wall seconds of a command, warm cache
    if command -v hyperfine > /dev/null; then
        hyperfine --style none --warmup 1 --runs "${RUNS:-5}" --export-json "$WORK/h.json" \
            "$1 > '$WORK/out'" > /dev/null
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$WORK/h.json"
    else
        local s e; s=$(date +%s.%N); bash -c "$1" > "$WORK/out"; e=$(date +%s.%N)
        python3 -c "print($e - $s)"
    fi
}
peak_rss_kib() { /usr/bin/time -v bash -c "$1 > '$WORK/out'" 2>&1 | awk -F: '/Maximum resident/ {print $2+0}'; }

# grep as the shell runs it (locale ${LANG:-unset}) and in the C locale, its fastest.
GREP_CMD="grep -c -E '$PATTERN' '$LOG'"
GREP_C_CMD="LC_ALL=C grep -c -E '$PATTERN' '$LOG'"
OUR_CMD="'$BIN' '$LOG' ERROR panicked"
G=$(seconds "$GREP_CMD")
GC=$(seconds "$GREP_C_CMD")
O=$(seconds "$OUR_CMD")
python3 - "$LINES" "$G" "$GC" "$O" "$(peak_rss_kib "$GREP_CMD")" "$(peak_rss_kib "$OUR_CMD")" \
    "${LANG:-unset}" <<'PY'
import sys
lines, g, gc, o = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
grss, orss, lang = sys.argv[5], sys.argv[6], sys.argv[7]
rate = lambda s: f"{s:6.3f} s  {lines / s / 1e6:7.2f} M lines/s"
print(f"grep -c -E ({lang}) : {rate(g)}  peak RSS {grss} KiB")
print(f"grep -c -E (C)   : {rate(gc)}")
print(f"scan_file        : {rate(o)}  peak RSS {orss} KiB")
print(f"throughput ratio scan_file/grep: {g / o:.2f} ({lang}), {gc / o:.2f} (C); target >= 0.5")
PY
