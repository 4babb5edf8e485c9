#!/usr/bin/env bash
# Runs every check and test of nap: formatting, clippy, and the whole test
# suite (unit tests and the end-to-end tests with real git, ssh and
# processes). Installs what the tests need first, so it works on a fresh
# Debian 12 machine with the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v git >/dev/null || need+=(git)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v python3 >/dev/null || need+=(python3)
# The build step's tests install a Python wheel offline (pip, venv) and a Node
# package with npm.
python3 -c 'import pip, venv' 2>/dev/null || need+=(python3-pip python3-venv)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# The web manager's browser tests drive headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# The fleet backend's tests run real etcd, and rendered units under a real
# systemd user manager (whose units fetch with curl).
command -v etcd >/dev/null || need+=(etcd-server)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
# Every app process runs in bubblewrap (nap-sandbox, and the fake fleet's
# machines); nap-certs' tests get certificates from pebble, the ACME test
# server, and check TLS versions with openssl's client.
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v pebble >/dev/null || need+=(pebble)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}"
    else
        echo "test.sh: missing ${need[*]}; install them (sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Most tests wait (for processes, sockets, pushes, a browser) far more than they
# compute, so twice as many run at once as there are cores.
cargo test --workspace -- --test-threads="$(($(nproc) * 2))"
