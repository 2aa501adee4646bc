#!/usr/bin/env bash
# Engine overhead: 200 trivial steps through `runbook run --yes` (every journal event fsynced)
# against a bash script that runs the same 200 commands each through `bash -c`; then the peak
# RSS of the engine while a step prints 1 GiB. Usage: bench/engine/run.sh [path/to/runbook]
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

printf '[runbook]\nname = "big"\n\n[[step]]\ntitle = "print 1 GiB"\nkind = "check"\nrun = "yes this is a line of step output that goes on for a while | head -c 1073741824"\n' > "$work/big.toml"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f '%M' -o "$work/rss" "$bin" run "$work/big.toml" --yes --state-dir "$work/state" >/dev/null 2>&1
  echo "peak RSS while a step prints 1 GiB: $(( $(cat "$work/rss") / 1024 )) MiB"
else
  echo "peak RSS: /usr/bin/time is missing (apt-get install time)"
fi
