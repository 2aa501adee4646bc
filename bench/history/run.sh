#!/usr/bin/env bash
# History over many runs: makes RUNS (default 100,000) run folders, each with a real journal
# (copied from one real run, with its id, runbook, environment and status varied), then times
# `runbook history` with filters through the index, and the same command with the index deleted
# before every try, so every journal is read (what a filter costs without an index), in the same
# run. Usage: bench/history/run.sh [path/to/runbook]   (RUNS=N to change the count)
set -euo pipefail
bin=${1:-target/release/runbook}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
bin=$(realpath "$bin")
runs=${RUNS:-100000}
# On the real disk, like the state directory: tmpfs would flatter the journal reads.
work=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}" bench-history.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat > "$work/rb.toml" <<'TOML'
[runbook]
name = "bench"
[env.staging]
[env.production]

[[step]]
title = "back up"
kind = "backup"
run = "echo backed up"
rollback = "echo restored"

[[step]]
title = "apply"
kind = "apply"
run = "echo applied"
rollback = "echo undone"

[[step]]
title = "check"
kind = "check"
run = "echo ok"
TOML
"$bin" run "$work/rb.toml" --env staging --yes --state-dir "$work/seed" >/dev/null 2>&1
seed=$(ls "$work/seed/runs")
echo "making $runs runs from the journal of one real run ($(wc -c < "$work/seed/runs/$seed/journal.jsonl") bytes)..."
python3 "$(dirname "$0")/gen.py" "$work/seed/runs/$seed/journal.jsonl" "$work/state/runs" "$runs"

python3 - "$bin" "$work/state" <<'PY'
import os, statistics, subprocess, sys, time
bin, state = sys.argv[1], sys.argv[2]
index = os.path.join(state, "history.index")
filtered = ["history", "--runbook", "bench-3", "--env", "production", "--status", "rolled_back",
            "--since", "3650d", "--state-dir", state]
plain = ["history", "--state-dir", state]

def run(args):
    start = time.perf_counter()
    out = subprocess.run([bin, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - start, out.stdout

def timed(label, args, tries, drop_index=False):
    times, out = [], b""
    for _ in range(tries):
        if drop_index and os.path.exists(index):
            os.remove(index)
        t, out = run(args)
        times.append(t)
    ms = statistics.median(times) * 1000
    print(f"{label}: median {ms:.0f} ms (min {min(times)*1000:.0f}, max {max(times)*1000:.0f}, {tries} tries)")
    return ms, out

run(plain)  # builds the index once
with_index, out_a = timed("history with filters, index", filtered, 10)
plain_ms, _ = timed("history (newest 20), index", plain, 10)
without, out_b = timed("history with filters, no index (every journal read)", filtered, 3, True)
assert out_a == out_b, "the index and the journals disagree"
rows = len(out_a.splitlines()) - 1
print(f"\nfiltered history over {len(os.listdir(os.path.join(state, 'runs')))} runs ({rows} shown): "
      f"{with_index:.0f} ms with the index, {without:.0f} ms without ({without / with_index:.0f}x)")
PY
