"""Real headless Chromium (Debian's package) driven by Playwright; never a downloaded browser."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator

import pytest

from bench.chromium import CHROMIUM_FLAGS

from ..helpers import require_binary


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    chromium = require_binary("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        with tempfile.TemporaryDirectory() as profile:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                env={**os.environ, "HOME": profile},
            )
            try:
                yield context
            finally:
                await context.close()
