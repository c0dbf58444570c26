#!/bin/sh
# A separate virtualenv whose PyAV bundles an FFmpeg with a working WHIP muxer for interop
# tests. PyAV 18 (what aiortc pulls in for Python 3.11) ships an FFmpeg 8 whose DTLS uses a
# secp224r1 certificate that OpenSSL 3.5+ refuses; PyAV 19 fixes that but needs Python 3.12+.
set -e
venv=.venv-ffmpeg
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import av; assert av.__version__.startswith('19.')" 2>/dev/null && exit 0
python=""
for candidate in python3.13 python3.12 /root/.pyenv/versions/3.13*/bin/python /root/.pyenv/versions/3.12*/bin/python; do
    # pyenv shims exist for versions that are not active: try each one for real.
    if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "ffmpeg-venv: no Python 3.12+ found; FFmpeg WHIP interop tests need one" >&2
    exit 0  # the test itself fails under CI=true when the venv is missing
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "av==19.0.2"
