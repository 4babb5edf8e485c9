#!/usr/bin/env bash
# Sets up and runs nap: makes sure the system git (nap serves pushes with
# git's own receive-pack) and bubblewrap (every app runs in its sandbox) are
# there, installs the `nap` binary with `cargo install` into cargo's bin
# directory (~/.cargo/bin, which rustup puts on a Rust user's PATH, so the
# README's `nap keys add ...` works as written),
# and starts `nap serve` from there with the arguments given (embedded
# defaults otherwise). Its data directory is ./nap-data of this directory.
set -euo pipefail
cd "$(dirname "$0")"
# git serves pushes; bubblewrap sandboxes every app (nap serve refuses to start without it,
# unless the config says `isolation: none`).
need=()
command -v git >/dev/null || need+=(git)
command -v bwrap >/dev/null || need+=(bubblewrap)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"
    else
        echo "run.sh: nap needs ${need[*]}; install them (sudo apt-get install ${need[*]}) and run again" >&2
        exit 1
    fi
fi
cargo install --quiet --locked --path crates/nap
# Where cargo installs binaries: CARGO_INSTALL_ROOT, else CARGO_HOME, else ~/.cargo.
nap="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin/nap"
if [ "$(command -v nap || true)" != "$nap" ]; then
    echo "run.sh: nap is installed as $nap, which is not what 'nap' runs in this shell;" \
        "use that path, or put $(dirname "$nap") first on your PATH" >&2
fi
echo "run.sh: data in $PWD/nap-data; from this directory, register the first key with:" \
    "nap keys add NAME --admin ~/.ssh/id_ed25519.pub" >&2
exec "$nap" serve "$@"
