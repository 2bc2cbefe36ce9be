# shellcheck shell=bash
# Shared by scripts/test and scripts/demo: install what the build needs, then build.
# Source it from bash; it defines functions only and changes no shell options.
#
#   shmetrics_ensure_deps   apt-get install the Debian 12 packages that are missing (sudo when not root)
#   shmetrics_ensure_npm_packages [DIR]
#                           npm ci the packages the Node tests and benchmarks run against
#                           (tests/node/npm/package-lock.json) into DIR/npm (default build/)
#   shmetrics_ensure_build [DIR [CMAKE_ARGS...]]
#                           configure DIR (default build/, Release) once, then build it; with
#                           CMAKE_ARGS (scripts/test's sanitizer builds) DIR is configured with
#                           them on every call, so a reused DIR always has exactly these options
#
# Both are idempotent: a second run checks dpkg and lets the build tool find nothing to do.
# SHMETRICS_JOBS sets the build's parallelism (default: nproc).

SHMETRICS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHMETRICS_BUILD_DIR="${SHMETRICS_BUILD_DIR:-${SHMETRICS_ROOT}/build}"

# What the build, the tests (promtool, a real Prometheus, the Python client for comparisons, the
# Python servers and frameworks the Python package is proven under, pip and venv for its install
# test) and the scripts themselves (curl) need; --web.config.file needs OpenSSL 3 (TLS, and the
# openssl command that makes test certificates), yaml-cpp (the file) and libcrypt (bcrypt); the
# deployment kit's tests (tests/deploy) need yamllint, systemd (systemd-analyze verify and
# security --offline, systemd-sysusers) and dpkg-dev (cpack's DEB generator computes the
# package's Depends with dpkg-shlibdeps). Names are Debian 12 (bookworm) package names.
SHMETRICS_DEB_PACKAGES=(
  g++ cmake make
  libboost1.81-dev prometheus-cpp-dev libprotobuf-dev protobuf-compiler
  libbenchmark-dev libgtest-dev googletest zlib1g-dev
  prometheus python3 python3-dev python3-prometheus-client curl
  libssl-dev openssl libyaml-cpp-dev libcrypt-dev
  python3-pip python3-venv python3-setuptools python3-wheel
  gunicorn python3-uvicorn python3-fastapi python3-django python3-django-prometheus python3-pytest
  yamllint systemd dpkg-dev
)
# Node.js with its headers (the addon is compiled against them) and npm: taken as they are when
# `node` is on PATH (these machines have NodeSource's Node 20, which ships both); otherwise
# Debian's, whose headers are in libnode-dev.
SHMETRICS_NODE_DEB_PACKAGES=(nodejs libnode-dev npm)

shmetrics_log() { printf '[shmetrics] %s\n' "$*" >&2; }
shmetrics_die() { printf '[shmetrics] error: %s\n' "$*" >&2; exit 1; }

# Runs "$@" as root: directly when we are root, through sudo otherwise.
shmetrics_as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    shmetrics_die "need root to run '$*': run as root or install sudo"
  fi
}

shmetrics_ensure_deps() {
  local missing=() pkg status wanted=("${SHMETRICS_DEB_PACKAGES[@]}")
  command -v node >/dev/null 2>&1 || wanted+=("${SHMETRICS_NODE_DEB_PACKAGES[@]}")
  for pkg in "${wanted[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    shmetrics_log "dependencies: all ${#wanted[@]} packages present"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    shmetrics_die "missing packages (${missing[*]}) and no apt-get: this script targets Debian 12"
  shmetrics_log "installing missing packages: ${missing[*]}"
  shmetrics_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
    shmetrics_die "apt-get update failed"
  shmetrics_as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    shmetrics_die "apt-get install failed for: ${missing[*]}"
}

shmetrics_ensure_npm_packages() {
  local dir="${1:-${SHMETRICS_BUILD_DIR}}/npm" lock="${SHMETRICS_ROOT}/tests/node/npm/package-lock.json"
  command -v npm >/dev/null 2>&1 || shmetrics_die "no npm on PATH (Node.js comes with it)"
  # The lock file installed last is kept beside node_modules: the same lock needs no second npm ci.
  if [[ -d "${dir}/node_modules" ]] && cmp -s "$lock" "${dir}/installed-lock.json"; then
    shmetrics_log "npm packages: ${dir#"${SHMETRICS_ROOT}"/}/node_modules is up to date"
    return 0
  fi
  shmetrics_log "npm packages: npm ci into ${dir#"${SHMETRICS_ROOT}"/} (from the npm registry)"
  mkdir -p "$dir" || shmetrics_die "cannot create ${dir}"
  cp "${SHMETRICS_ROOT}/tests/node/npm/package.json" "$lock" "$dir/" &&
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) &&
    cp "$lock" "${dir}/installed-lock.json" ||
    shmetrics_die "npm ci in ${dir} failed (it needs the npm registry)"
}

shmetrics_ensure_build() {
  local dir="${1:-${SHMETRICS_BUILD_DIR}}"
  local args=("${@:2}")
  [[ ${#args[@]} -gt 0 ]] || args=(-DCMAKE_BUILD_TYPE=Release)
  # A configure that failed halfway leaves a cache but no build files: configure again then.
  if [[ $# -gt 1 || ! -f "${dir}/CMakeCache.txt" ||
        ! ( -f "${dir}/Makefile" || -f "${dir}/build.ninja" ) ]]; then
    shmetrics_log "configuring ${dir} (${args[*]})"
    cmake -S "${SHMETRICS_ROOT}" -B "${dir}" "${args[@]}" >&2 ||
      shmetrics_die "cmake configure of ${dir} failed"
  fi
  shmetrics_log "building ${dir}"
  cmake --build "${dir}" -j"${SHMETRICS_JOBS:-$(nproc)}" >&2 || shmetrics_die "build of ${dir} failed"
}
