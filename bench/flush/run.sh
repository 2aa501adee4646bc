#!/usr/bin/env bash
# Benchmark of the flush step (issue 3): 1,000,000 keys, 200,000 of them matching page:upload:*.
# Compares, each on a freshly loaded dataset:
#   (a) redis-cli --scan --pattern P | xargs -n 1000 redis-cli unlink   (the manual way)
#   (b) flush() without backup          (c) flush() with backup
# and prints keys/s, the server's own busy time for the commands used (INFO commandstats, the
# floor no client can beat) and the client's peak RSS.
#
# usage: bench/flush/run.sh [TOTAL_KEYS] [MATCHING_KEYS] [VALUE_BYTES]
# env:   RUNBOOK_BIN  the runbook binary (default: target/release/runbook, built if missing)
set -euo pipefail

TOTAL=${1:-1000000}
MATCHING=${2:-200000}
VALUE_BYTES=${3:-100}
PATTERN='page:upload:*'
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CLI=(redis-cli -p "$PORT")

cleanup() {
    [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${RUNBOOK_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --quiet --release)
    RUNBOOK_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/runbook"
fi

# A one-step runbook: the flush as an operator would run it, through the real binary.
flush_runbook() { # file backup(true|false)
    {
        printf '[runbook]\nname = "bench-flush"\n\n[[step]]\ntitle = "flush"\nkind = "flush"\n'
        printf 'redis = "redis://127.0.0.1:%s/0"\npattern = "%s"\nbackup = %s\n' "$PORT" "$PATTERN" "$2"
        if [[ "$2" == false ]]; then printf 'irreversible = "benchmark data"\n'; fi
    } >"$1"
}

redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --enable-debug-command local --daemonize no >"$WORK/redis.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do "${CLI[@]}" ping >/dev/null 2>&1 && break; sleep 0.05; done

# DEBUG POPULATE makes N keys "prefix:0".."prefix:N-1" server-side: 1M keys in about a second.
load() {
    "${CLI[@]}" flushall >/dev/null
    "${CLI[@]}" debug populate $((TOTAL - MATCHING)) key "$VALUE_BYTES" >/dev/null
    "${CLI[@]}" debug populate "$MATCHING" page:upload "$VALUE_BYTES" >/dev/null
    local size
    size=$("${CLI[@]}" dbsize)
    [[ "$size" == "$TOTAL" ]] || { echo "loaded $size keys, expected $TOTAL" >&2; exit 1; }
    "${CLI[@]}" config resetstat >/dev/null
}

# Server busy time (µs) spent in these commands since the last CONFIG RESETSTAT.
server_usec() {
    local pattern
    pattern=$(IFS='|'; echo "$*")
    "${CLI[@]}" info commandstats | tr -d '\r' |
        awk -F'[:,=]' -v re="^cmdstat_($pattern)$" '$1 ~ re { sum += $5 } END { print sum + 0 }'
}

check_flushed() {
    local size
    size=$("${CLI[@]}" dbsize)
    [[ "$size" == "$((TOTAL - MATCHING))" ]] || { echo "after $1: $size keys left, expected $((TOTAL - MATCHING))" >&2; exit 1; }
}

now() { date +%s.%N; }
rate() { awk -v n="$MATCHING" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
peak_rss_mib() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }

ROWS=()
row() { ROWS+=("$(printf '%-34s %9s %11s %11s %13s %9s' "$@")"); }

# (a) the manual way. Peak RSS is the largest of the pipeline's processes (redis-cli --scan).
load
start=$(now)
/usr/bin/time -v -o "$WORK/time-a" bash -c \
    "redis-cli -p $PORT --scan --pattern '$PATTERN' | xargs -n 1000 redis-cli -p $PORT unlink >/dev/null"
end=$(now)
check_flushed "redis-cli | xargs"
a_secs=$(secs "$start" "$end")
a_usec=$(server_usec scan unlink)
row "(a) redis-cli --scan | xargs unlink" "$a_secs" "$(rate "$a_secs")" "$a_usec" "$(rate "$(awk -v u="$a_usec" 'BEGIN{print u/1e6}')")" "$(peak_rss_mib "$WORK/time-a")"

# (b) and (c): `runbook run` of a one-step flush runbook (journal fsynced, backup in the run's folder).
run_flush() { # label backup(true|false) commands...
    local label=$1 backup=$2
    shift 2
    load
    flush_runbook "$WORK/flush.toml" "$backup"
    rm -rf "$WORK/state"
    local start end s usec
    start=$(now)
    /usr/bin/time -v -o "$WORK/time" "$RUNBOOK_BIN" run "$WORK/flush.toml" --yes --state-dir "$WORK/state" >/dev/null 2>"$WORK/report.txt"
    end=$(now)
    check_flushed "$label"
    s=$(secs "$start" "$end")
    usec=$(server_usec "$@")
    row "$label" "$s" "$(rate "$s")" "$usec" "$(rate "$(awk -v u="$usec" 'BEGIN{print u/1e6}')")" "$(peak_rss_mib "$WORK/time")"
    grep -o 'deleted [0-9]* of [0-9]* matching keys[^(]*' "$WORK/report.txt" | sed "s/^/$label: /" >&2
    LAST_SECS=$s
}
run_flush "(b) runbook flush, no backup" false scan unlink
b_secs=$LAST_SECS
run_flush "(c) runbook flush, backup" true scan unlink dump pttl
c_secs=$LAST_SECS
backup_mib=$(awk -v b="$(stat -c %s "$WORK"/state/runs/*/flush-step-01.backup)" 'BEGIN { printf "%.1f", b / 1048576 }')

echo
echo "$TOTAL keys, $MATCHING matching '$PATTERN', values $VALUE_BYTES bytes; redis $(redis-server --version | awk '{print $3}'), $(nproc) cores"
printf '%-34s %9s %11s %11s %13s %9s\n' "method" "wall s" "keys/s" "server µs" "server keys/s" "RSS MiB"
printf '%s\n' "${ROWS[@]}"
echo
awk -v a="$a_secs" -v b="$b_secs" -v c="$c_secs" 'BEGIN {
    printf "speed-up vs redis-cli|xargs: no backup %.1fx (target >= 2x, aim 3x); backup %.1fx\n", a / b, a / c
    printf "backup speed / no-backup speed: %.2f (target >= 0.5)\n", b / c
}'
echo "backup file: $backup_mib MiB"
echo "(server µs: SCAN+UNLINK busy time, plus DUMP+PTTL for (c), from INFO commandstats;"
echo " runbook wall time is the whole process: start, journal, connect, SCAN+UNLINK pass, backup seal and fsync)"
