#!/usr/bin/env bash
# Benchmark of the flush on Redis Cluster and over TLS (issue 14): TOTAL keys, MATCHING of them
# matching page:upload:*, the same key names and values everywhere. In one run:
#   (a) `runbook run` of a flush (backup on) against a 3-primary cluster, beside the busiest
#       primary's own busy time for the commands it served (INFO commandstats: SCAN, DUMP,
#       PTTL, UNLINK), the floor when the nodes work in parallel;
#   (b) the same flush against one standalone server holding the same keys;
#   (c) the same flush as (b) over TLS (rediss:// with tls_ca, openssl-made certificates).
# Targets: (a) within 1.3x of its busiest primary and faster than (b); (c) within 1.5x of (b).
#
# Each flush runs ROUNDS times, the three kinds taking turns, and the fastest round of each is
# reported (with its own busy time): on a shared machine the load moves by the second, and
# taking turns keeps one kind from being measured only in a busy moment.
#
# usage: bench/cluster/run.sh [TOTAL_KEYS] [MATCHING_KEYS] [VALUE_BYTES] [ROUNDS]
# env:   RUNBOOK_BIN  the runbook binary (default: target/release/runbook, built if missing)
#        BENCH_DEBUG  set: also print each server's INFO commandstats lines for the flush
set -euo pipefail

TOTAL=${1:-1000000}
MATCHING=${2:-200000}
VALUE_BYTES=${3:-100}
ROUNDS=${4:-3}
PATTERN='page:upload:*'
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${RUNBOOK_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --quiet --release)
    RUNBOOK_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/runbook"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ping() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.05; done; echo "no redis on $1" >&2; exit 1; }

# --- servers: three cluster primaries, and one standalone server with a plain and a TLS port.
CLUSTER_PORTS=()
for i in 0 1 2; do
    port=$(free_port) bus=$(free_port)
    mkdir -p "$WORK/node$i"
    redis-server --port "$port" --cluster-port "$bus" --cluster-enabled yes --cluster-config-file nodes.conf \
        --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/node$i" >"$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
    CLUSTER_PORTS+=("$port")
    wait_ping "$port"
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") --cluster-replicas 0 --cluster-yes >"$WORK/create.log"
for port in "${CLUSTER_PORTS[@]}"; do
    for _ in $(seq 200); do redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.05; done
done

(
    cd "$WORK"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
        -extfile server.ext 2>/dev/null
)
SINGLE=$(free_port) TLS_PORT=$(free_port)
mkdir -p "$WORK/single"
redis-server --port "$SINGLE" --tls-port "$TLS_PORT" --tls-cert-file "$WORK/server.crt" \
    --tls-key-file "$WORK/server.key" --tls-ca-cert-file "$WORK/ca.crt" --tls-auth-clients no \
    --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/single" >"$WORK/single.log" 2>&1 &
PIDS+=($!)
wait_ping "$SINGLE"

# --- data: SET prefix:N value:N (padded to VALUE_BYTES), each key on the primary owning its
# slot (CRC16 as the cluster computes it), through redis-cli --pipe.
load() { # prefix count port...
    python3 - "$@" <<'EOF' | while read -r port file; do redis-cli -p "$port" --pipe <"$file" >/dev/null; done
import sys, os, subprocess
prefix, count, ports = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
size = int(os.environ["VALUE_BYTES"])
work = os.environ["WORK"]
table = []
for i in range(256):
    crc = i << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
    table.append(crc & 0xFFFF)
def slot(key):
    crc = 0
    for b in key:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ b) & 0xFF]
    return crc % 16384
owner = [0] * 16384
if len(ports) > 1:
    out = subprocess.run(["redis-cli", "-p", ports[0], "cluster", "slots"], capture_output=True, text=True).stdout.split()
    # CLUSTER SLOTS, flattened: start end ip port id [ip port id]... ; primaries come first
    i = 0
    while i + 4 < len(out):
        start, end, port = int(out[i]), int(out[i + 1]), out[i + 3]
        for s in range(start, end + 1):
            owner[s] = ports.index(port)
        i += 5
files = [open(f"{work}/load-{n}.resp", "wb") for n in range(len(ports))]
for n in range(count):
    key = f"{prefix}:{n}".encode()
    value = f"value:{n}".encode().ljust(size, b"x")
    f = files[owner[slot(key)] if len(ports) > 1 else 0]
    f.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
for n, f in enumerate(files):
    f.close()
    print(ports[n], f.name)
EOF
}
export VALUE_BYTES WORK

keys_on() { local n=0; for port in "$@"; do n=$((n + $(redis-cli -p "$port" dbsize))); done; echo "$n"; }
check_loaded() { [[ "$(keys_on "$@")" == "$TOTAL" ]] || { echo "loaded $(keys_on "$@") keys, expected $TOTAL" >&2; exit 1; }; }
check_flushed() { [[ "$(keys_on "${@:2}")" == "$((TOTAL - MATCHING))" ]] || { echo "after $1: $(keys_on "${@:2}") keys left" >&2; exit 1; }; }

# Busy time (µs) a server spent in the flush's commands since its last CONFIG RESETSTAT.
server_usec() {
    redis-cli -p "$1" info commandstats | tr -d '\r' |
        awk -F'[:,=]' '$1 ~ /^cmdstat_(scan|dump|pttl|unlink)$/ { sum += $5 } END { print sum + 0 }'
}

flush_runbook() { # file url [tls_ca]
    {
        printf '[runbook]\nname = "bench-cluster"\n\n[[step]]\ntitle = "flush"\nkind = "flush"\n'
        printf 'redis = "%s"\npattern = "%s"\n' "$2" "$PATTERN"
        if [[ -n "${3:-}" ]]; then printf 'tls_ca = "%s"\n' "$3"; fi
    } >"$1"
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

run_flush() { # label url tls_ca ports...
    local label=$1 url=$2 ca=$3
    shift 3
    for port in "$@"; do redis-cli -p "$port" config resetstat >/dev/null; done
    flush_runbook "$WORK/flush.toml" "$url" "$ca"
    rm -rf "$WORK/state"
    local start end
    start=$(now)
    "$RUNBOOK_BIN" run "$WORK/flush.toml" --yes --state-dir "$WORK/state" >/dev/null 2>"$WORK/report.txt"
    end=$(now)
    check_flushed "$label" "$@"
    LAST_SECS=$(secs "$start" "$end")
    LAST_BUSY=0
    for port in "$@"; do
        local usec
        usec=$(server_usec "$port")
        (( usec > LAST_BUSY )) && LAST_BUSY=$usec
    done
    grep -o 'deleted [0-9]* of [0-9]* matching keys[^(;]*' "$WORK/report.txt" | sed "s/^/$label: /" >&2
}

# Keep the fastest round of a kind: best_<kind> holds "secs busy".
keep() { # kind
    local var="best_$1"
    if [[ -z "${!var:-}" ]] || awk -v a="$LAST_SECS" -v b="${!var% *}" 'BEGIN { exit !(a < b) }'; then
        printf -v "$var" '%s %s' "$LAST_SECS" "$LAST_BUSY"
    fi
}

load key $((TOTAL - MATCHING)) "${CLUSTER_PORTS[@]}"
load key $((TOTAL - MATCHING)) "$SINGLE"
run_a() {
    load page:upload "$MATCHING" "${CLUSTER_PORTS[@]}"
    check_loaded "${CLUSTER_PORTS[@]}"
    run_flush "(a) cluster, 3 primaries" "redis://127.0.0.1:${CLUSTER_PORTS[0]}/0" "" "${CLUSTER_PORTS[@]}"
    keep a
    if [[ -n "${BENCH_DEBUG:-}" ]]; then for port in "${CLUSTER_PORTS[@]}"; do redis-cli -p "$port" info commandstats | grep -E "scan|dump|pttl|unlink" >&2; done; fi
}
run_b() {
    load page:upload "$MATCHING" "$SINGLE"
    check_loaded "$SINGLE"
    run_flush "(b) one server" "redis://127.0.0.1:$SINGLE/0" "" "$SINGLE"
    keep b
    if [[ -n "${BENCH_DEBUG:-}" ]]; then redis-cli -p "$SINGLE" info commandstats | grep -E "scan|dump|pttl|unlink" >&2; fi
}
run_c() {
    load page:upload "$MATCHING" "$SINGLE"
    check_loaded "$SINGLE"
    run_flush "(c) one server, TLS" "rediss://127.0.0.1:$TLS_PORT/0" "$WORK/ca.crt" "$SINGLE"
    keep c
}
# The order turns each round (abc, bca, cab), so no kind always follows the same one.
ORDER=(a b c)
for round in $(seq "$ROUNDS"); do
    for k in 0 1 2; do "run_${ORDER[$(( (k + round - 1) % 3 ))]}"; done
done
read -r a_secs a_busy <<<"$best_a"
read -r b_secs b_busy <<<"$best_b"
read -r c_secs c_busy <<<"$best_c"

echo
echo "$TOTAL keys, $MATCHING matching '$PATTERN', values $VALUE_BYTES bytes, backup on, fastest of $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg); redis $(redis-server --version | awk '{print $3}'), $(nproc) cores"
printf '%-28s %9s %11s %22s\n' "flush" "wall s" "keys/s" "busiest server busy s"
row() { printf '%-28s %9s %11.0f %22.3f\n' "$1" "$2" "$(awk -v n="$MATCHING" -v s="$2" 'BEGIN { print n / s }')" "$(awk -v u="$3" 'BEGIN { print u / 1e6 }')"; }
row "(a) cluster, 3 primaries" "$a_secs" "$a_busy"
row "(b) one server" "$b_secs" "$b_busy"
row "(c) one server, TLS" "$c_secs" "$c_busy"
echo
awk -v a="$a_secs" -v ab="$a_busy" -v b="$b_secs" -v c="$c_secs" 'BEGIN {
    printf "cluster wall / busiest primary busy time: %.2fx (target <= 1.3x)\n", a / (ab / 1e6)
    printf "cluster wall / one-server wall:           %.2fx (target < 1)\n", a / b
    printf "TLS wall / plain wall:                    %.2fx (target <= 1.5x)\n", c / b
}'
echo "(busy time: SCAN+DUMP+PTTL+UNLINK from INFO commandstats; wall: the whole runbook process)"
