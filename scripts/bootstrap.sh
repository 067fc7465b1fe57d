#!/usr/bin/env bash
# Installs what Shopfloor needs, idempotently, saying what it does:
#   system packages (bubblewrap), the virtual environment with the package and its
#   dependencies, and the embedded default model. Re-running skips what is there.
# Usage: scripts/bootstrap.sh [--no-model] [--extras local|dev,local]
#   --extras: which optional dependencies to install (default dev,local: everything the tests need;
#   `make demo` asks for local only, the runtime without the development tools).
set -euo pipefail
cd "$(dirname "$0")/.."
want_model=1
extras="dev,local"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-model) want_model=0 ;;
    --extras) extras="${2:?--extras needs a value: local or dev,local}"; shift ;;
    *) echo "bootstrap.sh: unknown option $1 (use --no-model, --extras local|dev,local)" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
skip() { printf '\033[2m    %s\033[0m\n' "$*"; }

APT_PACKAGES="bubblewrap libseccomp2 iproute2 python3-venv gcc libc6-dev"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    step "system packages missing:$missing (install them with apt-get as root; sandboxes need bubblewrap)"
  fi
else
  skip "system packages present ($APT_PACKAGES)"
fi
# gVisor (runsc) backs the optional `gvisor` sandbox backend; where the distribution has no
# package, that backend stays unavailable (and its test says so) rather than failing the set-up.
if ! command -v runsc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing gVisor (runsc) for the gvisor sandbox backend"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null 2>&1 \
      || skip "runsc is not available here: the gvisor sandbox backend stays off"
  else
    skip "runsc missing: the gvisor sandbox backend stays off (apt-get install runsc as root)"
  fi
else
  skip "gVisor present ($(command -v runsc))"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  step "creating virtual environment .venv ($($PY --version))"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
else
  skip "virtual environment .venv present"
fi

# One stamp per installed set of extras; a set that includes the wanted one will do (dev,local serves the demo).
deps_hash="$(sha256sum pyproject.toml | cut -c1-16)"
stamp=".venv/.shopfloor-deps-$deps_hash-$extras"
installed=""
for have in .venv/.shopfloor-deps-"$deps_hash"-*; do
  [ -f "$have" ] || continue
  have_extras="${have##*-}"
  covered=1
  for extra in ${extras//,/ }; do
    case ",$have_extras," in *",$extra,"*) ;; *) covered=0 ;; esac
  done
  [ "$covered" = 1 ] && installed="$have_extras"
done
if [ -z "$installed" ]; then
  step "installing Shopfloor and its dependencies [$extras] (llama-cpp-python compiles once, ~6 min on 2 cores; pip caches the wheel)"
  .venv/bin/pip install --progress-bar on -e ".[$extras]"
  rm -f .venv/.shopfloor-deps-*
  touch "$stamp"
else
  skip "Python dependencies installed [$installed]"
fi

if [ "$want_model" = 1 ]; then
  .venv/bin/shopfloor models install "${SHOPFLOOR_BOOTSTRAP_MODEL:-qwen2.5-coder-0.5b}"
  step "preparing the analyst's data-analysis skill (pandas, matplotlib, in the sandbox: ~90 s the first time)"
  .venv/bin/shopfloor skill prepare data-analysis
fi
