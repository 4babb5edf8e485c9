#!/usr/bin/env bash
# Sets up and runs nap: makes sure the system git is there (nap serves
# pushes with git's own receive-pack), builds the release binary, and starts
# `nap serve` with the arguments given (embedded defaults otherwise).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v git >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends git
    else
        echo "run.sh: nap needs git; install it (sudo apt-get install git) and run again" >&2
        exit 1
    fi
fi
# `cargo run` finds the binary wherever the target directory is.
exec cargo run --quiet --release -p nap -- serve "$@"
