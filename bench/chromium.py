"""How the tests and benchmarks start Debian's Chromium (see shared INTEROP notes)."""

CHROMIUM_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--allow-loopback-in-peer-connection",  # a private namespace has only lo
    "--autoplay-policy=no-user-gesture-required",
]
