"""End to end in a real headless Chromium: upload, pick a style, wait, download."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'cvstyle[web]'")
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from cvstyle.web import create_app, default_models, file_model  # noqa: E402
from servers import running_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
# The README's picture. Rewritten only when missing or asked for, so that test runs do
# not dirty the working tree (the page shows timings, which differ every run).
SCREENSHOT = ROOT / "docs" / "web-app.png"
UPDATE_SCREENSHOT = os.environ.get("CVSTYLE_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists()
# Debian's chromium; Playwright's own downloaded browsers are not used.
CHROMIUM = os.environ.get("CVSTYLE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, instance_norm_model) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        # An empty store: the catalogue's styles show as not downloaded.
        patch.setenv("CVSTYLE_HOME", str(tmp_path_factory.mktemp("cvstyle_home")))
        models = default_models() + [file_model(instance_norm_model, "test/wave", "Test wave")]
        with running_server(create_app(models, workers=1, queue_size=2)) as url:
            yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 800, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    external = []  # nothing may load from outside this server (no CDN, no fonts)
    page.on(
        "request",
        lambda request: request.url.startswith(("blob:", "data:", server)) or external.append(request.url),
    )
    page.goto(server)
    yield page
    context.close()
    assert not external, f"the page loaded something from elsewhere: {external}"


def test_upload_pick_a_style_wait_and_download(page: Page, tmp_path):
    sketch = page.get_by_role("radio", name="Pencil sketch (built-in)")
    expect(sketch).to_be_checked()  # the first available style is preselected
    expect(page.get_by_role("radio", name="Candy (unattributed artwork)")).to_be_disabled()
    previews = page.locator("#gallery img")  # one per available style, made on the server
    expect(previews).to_have_count(2)
    for preview in previews.all():
        expect(preview).to_have_js_property("naturalWidth", 192)
    expect(page.locator("#go")).to_be_disabled()

    page.set_input_files("#file", SAMPLES / "astronaut.png")
    expect(page.locator("#drop-text")).to_have_text("astronaut.png")
    page.get_by_text("Test wave").click()
    page.get_by_text("Pencil sketch (built-in)").click()  # a change of mind
    expect(sketch).to_be_checked()
    page.select_option("#size", "256")
    page.locator("#go").click()

    download_link = page.locator("#download")
    expect(download_link).to_be_visible(timeout=30_000)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#result-caption")).to_contain_text("256\u00d7256")
    with page.expect_download() as info:
        download_link.click()
    download = info.value
    assert download.suggested_filename == "astronaut_sketch.jpg"
    data = Path(download.path()).read_bytes()
    assert data[:3] == b"\xff\xd8\xff"  # JPEG
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (256, 256, 3)

    png = page.screenshot(full_page=True)
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    # Scaled down to keep the README's picture small; the page was drawn 800 px wide.
    shot = cv2.resize(shot, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    target = SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / SCREENSHOT.name
    target.parent.mkdir(exist_ok=True)
    assert cv2.imwrite(str(target), shot, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def test_dropped_photo_strength_and_error_messages(page: Page):
    # A photo dropped on the drop zone, as a desktop browser delivers it.
    chelsea = base64.b64encode((SAMPLES / "chelsea.png").read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "chelsea.png", { type: "image/png" }));
            return transfer;
        }""",
        chelsea,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop-text")).to_have_text("chelsea.png")
    page.get_by_text("Test wave").click()
    page.locator("#strength").press("Home")
    expect(page.locator("#strength-value")).to_have_text("0 %")
    page.select_option("#size", "1024")  # "up to 1024": a 451 x 300 photo is not enlarged
    expect(page.locator("#original")).to_have_js_property("naturalWidth", 451)
    page.locator("#go").click()
    expect(page.locator("#download")).to_be_visible(timeout=30_000)
    expect(page.locator("#download")).to_have_attribute("download", "chelsea_wave.jpg")
    expect(page.locator("#result-caption")).to_contain_text("451\u00d7300")

    # A text file: the server's message is shown, and no result stays on screen.
    page.set_input_files("#file", {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo"})
    page.locator("#go").click()
    expect(page.locator("#error")).to_have_text(
        "notes.jpg: not an image (expected JPEG, PNG, WebP, BMP or TIFF data)"
    )
    expect(page.locator("#download")).to_be_hidden()
    expect(page.locator("#go")).to_be_enabled()
