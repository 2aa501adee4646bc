#!/usr/bin/env bash
# Runs the whole test suite. The tests start their own redis-server (never the one on 6379), their
# own sshd hosts (each in a network namespace: iproute2), check the HTML note in a headless
# Chromium and the man page with man, so all of them are installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v ip >/dev/null || missing+=(iproute2)
command -v man >/dev/null || missing+=(man-db)
if ((${#missing[@]})); then
  echo "installing what the tests need: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --locked --all-targets "$@"
