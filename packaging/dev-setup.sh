#!/usr/bin/env bash
# Sets up a fresh Debian machine for running and testing Switchboard from a checkout:
# the Debian packages a Qt desktop and its tests need (a virtual X screen, a system tray,
# xdotool, the xcb libraries), the installer's build tools (wine, Inno Setup in .tools/,
# osslsigncode, mingw-w64), and a Python 3.12 virtual environment in .venv with the app
# and its test tools installed. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(xvfb trayer xdotool x11-utils imagemagick libegl1 libgl1 libxkbcommon-x11-0
      libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
      libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libfontconfig1
      libdbus-1-3 fonts-dejavu-core
      # A real Secret Service for the key store tests: gnome-keyring in a D-Bus session.
      gnome-keyring dbus-daemon
      # The installer checks (tests/packaging): Inno Setup's compiler runs under wine
      # (which needs its 32-bit half), osslsigncode signs and verifies, mingw-w64 builds
      # the Windows stand-in app.
      wine wine64 wine32:i386 osslsigncode gcc-mingw-w64-x86-64-win32)
# npm fetches Inno Setup; Debian's only where no Node.js is installed already.
command -v npm >/dev/null 2>&1 || debs+=(npm)
sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
if ! dpkg --print-foreign-architectures | grep -qx i386; then
    $sudo_ dpkg --add-architecture i386
fi
missing=()
for deb in "${debs[@]}"; do
    dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
    # A security mirror caught mid-sync fails `update` for one index (seen for i386);
    # the packages come from the release itself (-t), so go on with what was fetched.
    $sudo_ apt-get update -qq || echo "dev-setup: some package lists were not refreshed" >&2
    release="$(. /etc/os-release && echo "${VERSION_CODENAME:-stable}")"
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
        -t "$release" "${missing[@]}" >/dev/null
fi

# Inno Setup's compiler, pinned: the npm package carries its whole bin/ folder.
if [ ! -f .tools/innosetup/node_modules/innosetup/bin/ISCC.exe ]; then
    npm install --prefix .tools/innosetup --no-save --no-audit --no-fund --silent \
        innosetup@6.4.1
fi

# Python 3.12: on PATH, or one that pyenv holds without it being the global version.
python=""
for candidate in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 \
                 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "dev-setup: Python 3.12 is needed (PySide6 on 3.11 crashes a streaming view)." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    rm -rf .venv
    "$python" -m venv .venv
fi
# llama-cpp-python compiles llama.cpp (several minutes on two cores; pip caches the wheel).
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" .venv/bin/pip install -q --disable-pip-version-check \
    -e '.[test]'
.venv/bin/python -c 'import app, llama_cpp, PySide6' # fail here, not in the tests

# llama.cpp's own C++ `llama-server`, as offices run it (parallel slots, /props, /slots,
# /metrics): the node-pool tests start several. Built from the llama.cpp source that the
# installed llama-cpp-python's sdist vendors, so the server and the app's runtime are one
# version; about 8 minutes on two cores, kept in .tools/ and in the user's cache folder
# (a fresh clone on the same machine copies it instead of building again).
llama_version="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
server_dir=.tools/llama-server
cached="${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/llama-server-$llama_version"
if [ "$(cat "$server_dir/VERSION" 2>/dev/null)" != "$llama_version" ] \
        || [ ! -x "$server_dir/llama-server" ]; then
    rm -rf "$server_dir"
    mkdir -p "$server_dir"
    if [ ! -x "$cached/llama-server" ]; then
        work="$(mktemp -d)"
        .venv/bin/pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
            -d "$work" "llama-cpp-python==$llama_version"
        tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
        source_dir="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
        # The compiler's warnings go to a log, shown only if the build fails.
        if ! { cmake -S "$source_dir" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
                   -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
                   -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
                   -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
               && cmake --build "$work/build" --target llama-server -j "$(nproc)"; \
             } >"$work/build.log" 2>&1; then
            tail -50 "$work/build.log" >&2
            echo "dev-setup: building llama-server failed" >&2
            exit 1
        fi
        mkdir -p "$cached"
        cp "$work/build/bin/llama-server" "$cached/llama-server.tmp"
        mv "$cached/llama-server.tmp" "$cached/llama-server"
        rm -rf "$work"
    fi
    cp "$cached/llama-server" "$server_dir/llama-server"
    echo "$llama_version" > "$server_dir/VERSION"
fi
"$server_dir/llama-server" --version >/dev/null 2>&1 # fail here, not in the tests

# A real LiteLLM proxy, the gateway many IT teams put in front of their nodes, for the
# gateway tests; in a virtual environment of its own (its dependencies are not the app's).
# Where it can't be installed the tests that need it are skipped, and say why.
litellm_version=1.108.7
if [ "$(cat .tools/litellm/VERSION 2>/dev/null)" != "$litellm_version" ]; then
    rm -rf .tools/litellm
    if "$python" -m venv .tools/litellm \
            && .tools/litellm/bin/pip install -q --disable-pip-version-check \
                   "litellm[proxy]==$litellm_version" 2>.tools/litellm-install.log; then
        echo "$litellm_version" > .tools/litellm/VERSION
    else
        tail -5 .tools/litellm-install.log >&2
        echo "dev-setup: LiteLLM's proxy could not be installed; its tests will be skipped" >&2
        rm -rf .tools/litellm
    fi
fi
