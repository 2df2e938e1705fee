#!/usr/bin/env bash
# Installs every Debian 12 package that parley's build, tests, fuzzers and demo need.
# Idempotent: packages already present are left alone. Runs as root, or uses sudo.
set -euo pipefail

packages=(
    build-essential cmake ninja-build pkg-config git
    libopendht-dev dhtnode libgnutls28-dev libmsgpack-cxx-dev libasio-dev
    libngtcp2-dev libngtcp2-crypto-gnutls-dev
    libsqlite3-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
    libqrencode-dev libutf8proc-dev catch2
    libnatpmp-dev libminiupnpc-dev
    libopus-dev libvpx-dev
    iproute2 nftables procps python3
    tmux # drives `parley chat` in a real terminal (tests/cli/test_chat_tty.sh)
    python3-fusepy # the case-insensitive FUSE file system of tests/cli/test_transfer_casefold.sh
    miniupnpd-nftables # the NAT lab's UPnP/NAT-PMP router (netlab.sh up --upnp); no daemon starts
    vpx-tools sox ffmpeg
    libsdl2-dev # only for -DPARLEY_DEVICES=ON (SDL2 audio and window)
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: not root and no sudo: install ${missing[*]} by hand" >&2; exit 1; }
    sudo="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
