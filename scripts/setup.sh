#!/usr/bin/env bash
# Installs every build and test dependency of pi from the distribution's
# packages (Debian 12 / Ubuntu 22.04+). Idempotent; runs as root or via sudo.
set -euo pipefail

pkgs=(build-essential cmake pkg-config git xz-utils procps
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libnuma-dev
      clang libclang-rt-dev
      libmicrohttpd-dev libcjson-dev curl
      python3 python3-zmq python3-protobuf python3-numpy python3-requests python3-jinja2
      wamerican)  # /usr/share/dict/words: the default model's English check

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all dependencies present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
