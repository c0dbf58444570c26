#!/bin/sh
# Podman as the container test uses it (scripts/container-image.sh, tests/deploy): with a
# storage of its own, apart from any other Podman's on the machine, and this machine kind's
# settings (containers.conf). The storage driver is the one container-image.sh found to work.
state=/var/lib/eurelay-podman
driver=$(cat $state/driver 2>/dev/null || echo overlay)
CONTAINERS_CONF="$(cd "$(dirname "$0")" && pwd)/containers.conf"
export CONTAINERS_CONF
exec podman --root $state/storage --runroot /run/eurelay-podman/run \
    --tmpdir /run/eurelay-podman/tmp --storage-driver "$driver" "$@"
