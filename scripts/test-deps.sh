#!/bin/sh
# Installs the system packages the test suite needs; a fresh CI machine has none of them.
# redis-server and coturn's turnserver are started by the tests themselves.
# Chromium comes from Debian (Playwright only drives it: no browser download).
# GStreamer's webrtcbin is an interop client (tests/interop/gst_webrtc.py, run by Debian's
# python3 through python3-gi); node runs libdatachannel (scripts/node-clients.sh).
set -e
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v turnserver >/dev/null 2>&1 || need="$need coturn"
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
for package in gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    gstreamer1.0-nice python3-gi gir1.2-gst-plugins-bad-1.0; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
        need="$need $package"
done
if [ -n "$need" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-deps: need root to install:$need" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
