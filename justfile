# runbook's recipes: `just --list` shows them.

# Build the release binary
build:
    cargo build --release

# Put `runbook` on your PATH (~/.cargo/bin)
install:
    cargo install --path . --locked

# Run the whole test suite (installs redis-server and chromium when missing)
test *ARGS:
    scripts/test.sh {{ARGS}}

# Format, lint, test: what CI runs
ci:
    cargo fmt --all -- --check
    cargo clippy --all-targets --locked -- -D warnings
    scripts/test.sh

# Run the example runbook unattended
example:
    cargo run --release -- run runbooks/upload-limits.toml --yes

# Check every example runbook
check:
    cargo run --release -- check runbooks/*.toml

# All benchmarks; figures go into the README's performance section
bench: build
    bench/engine/run.sh
    bench/flush/run.sh
    bench/cluster/run.sh
    bench/watch/run.sh
    bench/history/run.sh
    bench/ssh/run.sh

# Engine overhead per step and memory while a step prints 1 GiB
bench-engine: build
    bench/engine/run.sh

# Flush throughput against redis-cli --scan | xargs redis-cli unlink
bench-flush: build
    bench/flush/run.sh

# Flush on a 3-primary Redis Cluster against its busiest primary and one server; TLS against plain
bench-cluster: build
    bench/cluster/run.sh

# Steps on 20 sshd hosts against bare `ssh -S master true` and Ansible; memory 5 vs 100 hosts (root)
bench-ssh: build
    bench/ssh/run.sh

# Watch matching throughput against grep -c -E on a 1 GiB log
bench-watch: build
    bench/watch/run.sh

# history with filters over 100,000 runs, with the index and without it
bench-history: build
    bench/history/run.sh

# Format the code
fmt:
    cargo fmt --all
