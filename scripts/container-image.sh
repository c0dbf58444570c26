#!/bin/sh
# Builds docker/Dockerfile with Podman for the container test (tests/deploy/test_container.py)
# and writes the image's name to build/container-image. No Docker engine and no registry pull:
# the base is a Debian bookworm with Python made by mmdebstrap (see ../shared/INTEROP.md).
# It runs before pytest, outside the tests' network namespace: pip in the build needs PyPI.
# The base is made once; the image is built again only when its inputs change (the files the
# Dockerfile copies, the Dockerfile, this script, the base), so a repeated `make test` costs
# a hash of the sources.
set -e
cd "$(dirname "$0")/.."
need=""
command -v podman >/dev/null 2>&1 || need="$need podman"
command -v runc >/dev/null 2>&1 || need="$need runc"  # podman would bring crun, which fails here
command -v mmdebstrap >/dev/null 2>&1 || need="$need mmdebstrap"
if [ -n "$need" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "container-image: need root to install:$need" >&2
        exit 1
    fi
    apt-get update -qq
    # shellcheck disable=SC2086  # a list of packages
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
podman=./scripts/podman.sh
base=localhost/eurelay-base:bookworm
ref_file=build/container-image
state=/var/lib/eurelay-podman  # as in scripts/podman.sh, which reads the driver chosen here
if [ ! -f $state/driver ]; then
    # overlay builds in about a minute; vfs, which copies every layer, takes four but works
    # where overlay cannot mount (e.g. on an overlay filesystem)
    mkdir -p $state
    for driver in overlay vfs; do
        echo $driver >$state/driver
        $podman info >/dev/null 2>&1 && break
        rm -rf $state/storage $state/driver
    done
    if [ ! -f $state/driver ]; then
        echo "container-image: podman does not start here:" >&2
        $podman info >/dev/null
        exit 1
    fi
fi
if ! $podman image exists $base; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "container-image: making $base with mmdebstrap"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$tmp/base.tar"
    $podman import --quiet "$tmp/base.tar" $base >/dev/null
    rm -rf "$tmp"
fi
# what the Dockerfile copies from the context: every COPY source but --from ones
sources=$(awk '$1 == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' docker/Dockerfile)
# shellcheck disable=SC2086  # $sources is a list of paths
hash=$({
    $podman image inspect --format '{{.Id}}' $base
    find docker/Dockerfile .dockerignore scripts/container-image.sh $sources -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
image=localhost/eurelay:test-$hash
old=$(cat $ref_file 2>/dev/null || true)
if $podman image exists "$image"; then
    echo "container-image: $image is up to date"
else
    echo "container-image: building $image (log: build/container-image.log)"
    mkdir -p build
    # pip in the build reaches PyPI through the host's network and certificates
    if ! $podman build --network host --format docker -v /etc/ssl/certs:/etc/ssl/certs:ro \
        --build-arg BASE=$base -f docker/Dockerfile -t "$image" . >build/container-image.log 2>&1
    then
        tail -n 30 build/container-image.log >&2
        exit 1
    fi
fi
mkdir -p build
echo "$image" >$ref_file
if [ -n "$old" ] && [ "$old" != "$image" ] && $podman image exists "$old"; then
    $podman rmi "$old" >/dev/null || true  # this checkout's previous image
fi
