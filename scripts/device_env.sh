# shellcheck shell=bash
# Sourced (not run) by scripts/device_check.sh and scripts/bench_compare.sh on the lent GPU machine,
# which has CUDA but no ZeroMQ/protobuf-c: `pi_device_env [DEBS_DIR]` unpacks the offline .debs
# carried in .deps/offline-debs (copied from ../shared/offline-debs) into a prefix and exports what
# the build and the binaries need. Where DEBS_DIR holds no .deb (a machine with the libraries
# installed, e.g. after scripts/setup.sh) it only puts CUDA on PATH.
# Sets and exports: PI_DEPS_PREFIX (the prefix, /tmp/deps; "" when nothing was unpacked), PATH,
# LD_LIBRARY_PATH, PKG_CONFIG_PATH, PKG_CONFIG_SYSROOT_DIR; and PI_DEPS_CMAKE, the cmake arguments
# that point the build at the prefix (an array).
pi_device_env() {
  local debs=${1:-.deps/offline-debs} f n
  # shellcheck disable=SC2034
  PI_DEPS_CMAKE=()
  export PATH=/usr/local/cuda/bin:$PATH
  if ! compgen -G "$debs/*.deb" >/dev/null; then
    export PI_DEPS_PREFIX=
    return 0
  fi
  export PI_DEPS_PREFIX=${PI_DEPS_PREFIX:-/tmp/deps}
  mkdir -p "$PI_DEPS_PREFIX" || return 1
  for f in "$debs"/*.deb; do dpkg -x "$f" "$PI_DEPS_PREFIX" || return 1; done
  local lib=$PI_DEPS_PREFIX/usr/lib/x86_64-linux-gnu
  [ -e "$lib/libnuma.so" ] || ln -sf /usr/lib/x86_64-linux-gnu/libnuma.so.1 "$lib/libnuma.so"
  export PATH=$PI_DEPS_PREFIX/usr/bin:$PATH LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
  # libzmq.pc names private dependencies that are not installed there; stubs satisfy pkg-config
  # (we link dynamically, so they are never used).
  local stubs=$PI_DEPS_PREFIX/stub-pc
  mkdir -p "$stubs"
  for n in krb5-gssapi libsodium openpgm-5.3 norm libbsd; do
    printf 'Name: %s\nDescription: stub\nVersion: 99\n' "$n" >"$stubs/$n.pc"
  done
  export PKG_CONFIG_PATH=$lib/pkgconfig:$stubs PKG_CONFIG_SYSROOT_DIR=$PI_DEPS_PREFIX
  # shellcheck disable=SC2034  # read by the scripts that source this file
  PI_DEPS_CMAKE=(-DCMAKE_PREFIX_PATH="$PI_DEPS_PREFIX/usr")
}
