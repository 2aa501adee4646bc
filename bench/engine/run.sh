#!/usr/bin/env bash
# Engine overhead: 200 trivial steps through `runbook run --yes` (every event durable before the
# next step starts) against a bash script that runs the same 200 commands each through `bash -c`,
# beside the cost of one fdatasync on the same disk (the floor: one per step); then whether the
# cost per step stays flat at 10,000 steps, forward and in `rollback RUN`; then the peak RSS of
# the engine while a step prints 1 GiB. Usage: bench/engine/run.sh [path/to/runbook]
set -euo pipefail
bin=${1:-target/release/runbook}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
bin=$(realpath "$bin")
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 1; }
# The journal must live on a real disk: fsync on tmpfs costs nothing and would flatter us.
work=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}" bench-engine.XXXXXX)
trap 'rm -rf "$work"' EXIT
steps=200

{
  printf '[runbook]\nname = "bench"\n'
  for i in $(seq 1 $steps); do
    printf '\n[[step]]\ntitle = "step %d"\nkind = "check"\nrun = "true %d"\n' "$i" "$i"
  done
} > "$work/bench.toml"
{
  echo '#!/usr/bin/env bash'
  for i in $(seq 1 $steps); do echo "bash -c 'true $i'"; done
} > "$work/bench.sh"

"$bin" check "$work/bench.toml" >/dev/null
hyperfine --warmup 2 --runs 10 --export-json "$work/times.json" \
  -n "runbook ($steps steps)" "$bin run $work/bench.toml --yes --state-dir $work/state 2>/dev/null" \
  -n "bash -c x $steps" "bash $work/bench.sh"
python3 - "$work/times.json" "$steps" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
steps = int(sys.argv[2])
engine, bash = r[0]["mean"], r[1]["mean"]
print(f"\nper-step overhead: {(engine - bash) / steps * 1000:.3f} ms "
      f"(runbook {engine*1000:.1f} ms, bash {bash*1000:.1f} ms for {steps} steps)")
PY

# The floor: one write + fdatasync of a journal-sized line on the same disk.
python3 - "$work/sync.probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
line = b"x" * 300 + b"\n"
n = 2000
t = time.perf_counter()
for _ in range(n):
    os.write(fd, line)
    os.fdatasync(fd)
print(f"one write + fdatasync on this disk: {(time.perf_counter() - t) / n * 1000:.3f} ms")
PY

# Flat with size: the same trivial step 200 and 10,000 times, forward (run) and backward
# (rollback RUN of the run), each against as many `bash -c` in the same run.
runbook_of() { # N KIND -> a runbook of N steps of KIND, each with a rollback
  printf '[runbook]\nname = "flat%s"\n' "$1"
  for i in $(seq 1 "$1"); do
    printf '\n[[step]]\ntitle = "s%d"\nkind = "apply"\nrun = "true %d"\nrollback = "true %d"\n' "$i" "$i" "$i"
  done
}
seconds() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc -l; }
for n in 200 10000; do
  runbook_of "$n" > "$work/flat$n.toml"
  { echo '#!/usr/bin/env bash'; for i in $(seq 1 "$n"); do echo "bash -c 'true $i'"; done; } > "$work/flat$n.sh"
  fwd=$(seconds "$bin" run "$work/flat$n.toml" --yes --state-dir "$work/flat$n")
  back=$(seconds "$bin" rollback last --yes --state-dir "$work/flat$n")
  sh=$(seconds bash "$work/flat$n.sh")
  python3 -c "import sys; n,f,b,s=int(sys.argv[1]),*map(float,sys.argv[2:]); print(f'{n} steps: run {f*1000/n:.3f} ms/step, rollback RUN {b*1000/n:.3f} ms/step, bash -c {s*1000/n:.3f} ms/step (overhead: run {(f-s)*1000/n:.3f}, rollback {(b-s)*1000/n:.3f} ms/step)')" "$n" "$fwd" "$back" "$sh"
done

printf '[runbook]\nname = "big"\n\n[[step]]\ntitle = "print 1 GiB"\nkind = "check"\nrun = "yes this is a line of step output that goes on for a while | head -c 1073741824"\n' > "$work/big.toml"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f '%M' -o "$work/rss" "$bin" run "$work/big.toml" --yes --state-dir "$work/state" >/dev/null 2>&1
  echo "peak RSS while a step prints 1 GiB: $(( $(cat "$work/rss") / 1024 )) MiB"
else
  echo "peak RSS: /usr/bin/time is missing (apt-get install time)"
fi
