#!/bin/sh
# libdatachannel for the interop tests: npm's node-datachannel ships a prebuilt binary. It is
# installed from its lockfile into tests/interop/libdatachannel/node_modules, here and not in
# the tests: npm needs the registry, and the tests run where only loopback exists.
set -e
dir=tests/interop/libdatachannel
installed=$dir/node_modules/node-datachannel/package.json
if [ -f "$installed" ] && node -e '
    const [installed, wanted] = process.argv.slice(1).map((f) => require(require("path").resolve(f)));
    process.exit(installed.version === wanted.dependencies["node-datachannel"] ? 0 : 1);
' "$installed" "$dir/package.json"; then
    exit 0
fi
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
