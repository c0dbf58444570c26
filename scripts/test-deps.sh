#!/bin/sh
# Installs the system packages the test suite needs; a fresh CI machine has none of them.
# redis-server and coturn's turnserver are started by the tests themselves.
# Chromium comes from Debian (Playwright only drives it: no browser download).
set -e
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v turnserver >/dev/null 2>&1 || need="$need coturn"
if [ -n "$need" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-deps: need root to install:$need" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
