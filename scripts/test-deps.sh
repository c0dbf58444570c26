#!/bin/sh
# Installs the system packages the test suite needs (real redis-server and chromium come
# with later issues); a fresh CI machine has none of them.
set -e
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
