#!/usr/bin/env bash
# Steps on many hosts, in one run, side by side:
#   - runbook: 20 hosts x 10 trivial steps (`true`), one batch, 20 at once;
#   - the floor: the same 200 commands as bare `ssh -S <master> host true` over open masters,
#     20 hosts at once (10 in a row each);
#   - Ansible (ansible-core from PyPI, installed in a venv when missing): the same hosts, 10
#     `command: true` tasks, forks = 20, its own ControlPersist;
#   - memory: runbook's peak RSS with 5 and with 100 hosts.
# Every host is a real sshd in its own network namespace (root needed), on 198.19.0.0/16 (the
# tests use 198.18.0.0/16). Only what this script made is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/ssh needs root (network namespaces)" >&2; exit 1; }
bin=$PWD/target/release/runbook
[ -x "$bin" ] || cargo build --release -q
work=$(mktemp -d /tmp/rb-bench-ssh.XXXXXX)
pids=()
nets=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # what is left in our namespaces (sessions whose client went away) is ours too
  for n in "${nets[@]}"; do
    for p in $(ip netns pids "rbb-$n" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    ip link del "rbbh$n" 2>/dev/null || true; ip netns del "rbb-$n" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p /run/sshd
# Sessions get a home of their own: this machine's ~/.bashrc (bash reads it for commands run by
# sshd) would otherwise weigh on every command of every side.
mkdir -p "$work/home"
ssh-keygen -q -t ed25519 -N '' -f "$work/id" -C bench
cp "$work/id.pub" "$work/authorized_keys"
: > "$work/known_hosts"
: > "$work/ssh_config"

# host N: namespace rbb-N, veth rbbhN <-> rbbnN, 198.19.(N*4>>8).(N*4&255 + 1|2)
up() {
  local n=$1 base=$(( $1 * 4 ))
  local a="198.19.$((base >> 8)).$(((base & 255) + 1))" b="198.19.$((base >> 8)).$(((base & 255) + 2))"
  ip netns add "rbb-$n"; nets+=("$n")
  ip link add "rbbh$n" type veth peer name "rbbn$n"
  ip link set "rbbn$n" netns "rbb-$n"
  ip addr add "$a/30" dev "rbbh$n"; ip link set "rbbh$n" up
  ip netns exec "rbb-$n" ip addr add "$b/30" dev "rbbn$n"
  ip netns exec "rbb-$n" ip link set "rbbn$n" up
  ip netns exec "rbb-$n" ip link set lo up
  ssh-keygen -q -t ed25519 -N '' -f "$work/host_$n" -C "host$n"
  cat > "$work/sshd_$n.conf" <<EOF
Port 22
ListenAddress $b
HostKey $work/host_$n
AuthorizedKeysFile $work/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
LogLevel ERROR
MaxSessions 200
MaxStartups 200
SetEnv HOME=$work/home
EOF
  ip netns exec "rbb-$n" /usr/sbin/sshd -D -f "$work/sshd_$n.conf" & pids+=($!)
  echo "$b $(cut -d' ' -f1,2 "$work/host_$n.pub")" >> "$work/known_hosts"
  printf 'Host b%s\n  HostName %s\n  User root\n' "$n" "$b" >> "$work/ssh_config"
}

finish_config() {
  cat >> "$work/ssh_config" <<EOF
Host *
  IdentityFile $work/id
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $work/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
EOF
}

wait_up() {
  for n in $(seq 1 "$1"); do
    for _ in $(seq 1 200); do
      ssh -F "$work/ssh_config" -o BatchMode=yes "b$n" true 2>/dev/null && break
      sleep 0.05
    done
  done
}

# A runbook of STEPS trivial steps on the first HOSTS hosts, CONCURRENCY (default: all) at once.
runbook_for() {
  local hosts=$1 steps=$2 concurrency=${3:-$1} f="$work/rb-$1.toml"
  {
    echo '[runbook]'; echo 'name = "bench-ssh"'; echo
    echo '[env.bench.hosts]'
    printf 'all = ['; for n in $(seq 1 "$hosts"); do printf '"b%s",' "$n"; done; echo ']'
    echo; echo '[ssh]'; echo "config = \"$work/ssh_config\""
    echo; echo '[rollout]'; echo 'serial = ["100%"]'; echo "concurrency = $concurrency"
    for s in $(seq 1 "$steps"); do
      echo; echo '[[step]]'; echo "title = \"step $s\""; echo 'kind = "check"'
      echo 'on = "all"'; echo 'run = "true"'
    done
  } > "$f"
  echo "$f"
}

now() { date +%s.%N; }

HOSTS=20
STEPS=10
echo "starting 100 sshd hosts in network namespaces..."
for n in $(seq 1 100); do up "$n"; done
finish_config
wait_up 100

# runbook
rb=$(runbook_for $HOSTS $STEPS)
export RUNBOOK_STATE_DIR="$work/state" RUNBOOK_OPERATOR=bench NO_COLOR=1
t0=$(now)
"$bin" run "$rb" --env bench --yes > "$work/runbook.out" 2>&1 || { cat "$work/runbook.out"; exit 1; }
t1=$(now)
runbook_s=$(echo "$t1 - $t0" | bc -l)

# the floor: masters opened (timed, as runbook's are), then 10 x `ssh -S master host true` each
ctl="$work/ctl"; mkdir -p "$ctl"
# (`wait` is given the jobs' pids: a bare `wait` would wait for the sshds too.)
t0=$(now)
jobs_=()
for n in $(seq 1 $HOSTS); do
  ssh -F "$work/ssh_config" -o BatchMode=yes -o ControlMaster=yes -o ControlPersist=60 \
    -o "ControlPath=$ctl/%C" -f -N "b$n" & jobs_+=($!)
done
wait "${jobs_[@]}"
jobs_=()
for n in $(seq 1 $HOSTS); do
  ( for _ in $(seq 1 $STEPS); do ssh -F "$work/ssh_config" -o "ControlPath=$ctl/%C" -S "$ctl/%C" "b$n" true; done ) & jobs_+=($!)
done
wait "${jobs_[@]}"
t1=$(now)
bare_s=$(echo "$t1 - $t0" | bc -l)
for n in $(seq 1 $HOSTS); do ssh -F "$work/ssh_config" -o "ControlPath=$ctl/%C" -O exit "b$n" 2>/dev/null || true; done

# Ansible
venv=${ANSIBLE_VENV:-/tmp/rb-bench-ansible-venv}
if [ ! -x "$venv/bin/ansible-playbook" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q ansible-core
fi
{
  echo '[all]'; for n in $(seq 1 $HOSTS); do echo "b$n"; done
} > "$work/inventory"
{
  echo '- hosts: all'; echo '  gather_facts: false'; echo '  tasks:'
  for s in $(seq 1 $STEPS); do echo "    - name: step $s"; echo '      command: "true"'; done
} > "$work/play.yml"
cat > "$work/ansible.cfg" <<EOF
[defaults]
forks = $HOSTS
host_key_checking = True
# The hosts are this machine: the venv's python is there, as a remote's own python would be.
interpreter_python = $venv/bin/python
[ssh_connection]
ssh_args = -F $work/ssh_config -o ControlMaster=auto -o ControlPersist=60s
control_path_dir = $work/ansible-cp
EOF
t0=$(now)
ANSIBLE_CONFIG="$work/ansible.cfg" "$venv/bin/ansible-playbook" -i "$work/inventory" "$work/play.yml" > "$work/ansible.out" 2>&1 \
  || { grep -m5 -E 'msg|FAILED|UNREACHABLE' "$work/ansible.out"; exit 1; }
t1=$(now)
ansible_s=$(echo "$t1 - $t0" | bc -l)

# memory: 5 hosts and 100 hosts, the same 10 steps, the same concurrency
# (the same rollout for both: 20 hosts at once, as above; 5 hosts are then all at once)
rss() {
  local f; f=$(runbook_for "$1" $STEPS $HOSTS)
  /usr/bin/time -f '%M' -o "$work/rss" "$bin" run "$f" --env bench --yes > /dev/null 2>&1
  cat "$work/rss"
}
rss5=$(rss 5)
rss100=$(rss 100)

per=$(echo "$runbook_s / $STEPS" | bc -l)
bare_per=$(echo "$bare_s / $STEPS" | bc -l)
printf '%s hosts x %s steps (20 at once)\n' $HOSTS $STEPS
printf '  runbook run:                 %6.2f s  (%.1f ms per step across the fleet)\n' "$runbook_s" "$(echo "$per * 1000" | bc -l)"
printf '  bare ssh -S master true:     %6.2f s  (%.1f ms per step across the fleet)\n' "$bare_s" "$(echo "$bare_per * 1000" | bc -l)"
printf '  ansible-playbook (forks 20): %6.2f s\n' "$ansible_s"
printf '  runbook / bare ssh:          %6.2fx   (target <= 1.2x)\n' "$(echo "$runbook_s / $bare_s" | bc -l)"
printf '  ansible / runbook:           %6.2fx   (target >= 10x)\n' "$(echo "$ansible_s / $runbook_s" | bc -l)"
printf 'peak RSS of runbook: %s KiB with 5 hosts, %s KiB with 100 hosts\n' "$rss5" "$rss100"
