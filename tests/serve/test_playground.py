"""The playground in a real headless browser: Playwright for Python driving Debian's chromium
(``executable_path``; never ``playwright install``), against a real uvicorn on 127.0.0.1.
The canvas updates step by step, masks fall, the final text equals the API's, the replay
slider rebuilds any step, two panes stream at once, and the page logs no error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from dlm.serve import model_ids  # noqa: E402
from dlm.serve.app import create_app  # noqa: E402
from tests.serve.conftest import running, wait_ready  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(make setup installs it)")

WATCH = """() => {
  window.seen = [];
  const canvas = document.querySelector('.pane[data-pane="0"] .canvas');
  new MutationObserver(() => window.seen.push([+canvas.dataset.step, +canvas.dataset.masked,
      canvas.querySelectorAll('.tok.new').length, canvas.querySelectorAll('.tok.mask').length]))
    .observe(canvas, {attributes: true, attributeFilter: ['data-step']});
}"""


@pytest.fixture(scope="module")
def site(checkpoints):
    app = create_app(load=lambda: model_ids([str(checkpoints["tiny"]),
                                             str(checkpoints["tiny-ar"])],
                                            ["tiny", "tiny-ar"], device="cpu"))
    with running(app) as base:
        wait_ready(base)
        yield base


@pytest.fixture
def page(site):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.errors = []
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(site + "/")
        page.wait_for_function("document.querySelectorAll('.pane .model option').length == 2")
        yield page
        browser.close()


def knob(page, pane: int, name: str, value) -> None:
    page.fill(f'.pane[data-pane="{pane}"] [data-knob="{name}"]', str(value))


def test_the_canvas_denoises_step_by_step_to_the_apis_text(page, site):
    pane = '.pane[data-pane="0"]'
    page.fill(f"{pane} .input", "ROMEO:")
    knob(page, 0, "max_tokens", 16)
    knob(page, 0, "steps", 8)
    page.evaluate(WATCH)
    page.click(f"{pane} .run")
    page.wait_for_selector(f'{pane} .canvas[data-state="done"]', timeout=30_000)
    seen = page.evaluate("window.seen")
    assert seen[0] == [0, 16, 0, 16]  # the start: every answer slot masked
    seen = seen[1:]
    steps = [s for s, _, _, _ in seen]
    assert steps == list(range(1, 9))  # one frame per step, in order
    masked = [m for _, m, _, _ in seen]
    assert masked == [16 - 2 * k for k in range(1, 9)]  # two masks fall each step
    assert all(new == 2 for _, _, new, _ in seen)  # the step's commits are highlighted
    assert [m for _, _, _, m in seen] == masked  # masked cells on screen == masks left
    final = page.inner_text(f"{pane} .final")
    api = httpx.post(site + "/v1/completions", json={
        "model": "tiny", "prompt": "ROMEO:", "max_tokens": 16, "steps": 8, "temperature": 0,
        "seed": 0}).json()
    assert final == api["choices"][0]["text"]
    # replay: back to the start, every answer slot masked; then the end again
    page.fill(f"{pane} .slider", "0")
    assert page.locator(f"{pane} .canvas .tok.mask").count() == 16
    page.fill(f"{pane} .slider", "8")
    assert page.locator(f"{pane} .canvas .tok.mask").count() == 0
    assert "step 8/8" in page.inner_text(f"{pane} .stats")
    assert page.errors == []


def test_two_runs_stream_side_by_side_and_a_bad_knob_shows_the_error(page):
    page.check("#compare")
    page.wait_for_selector('.pane[data-pane="1"]')
    page.select_option('.pane[data-pane="1"] .model', "tiny-ar")
    for pane in (0, 1):
        page.fill(f'.pane[data-pane="{pane}"] .input', "JULIET:")
        knob(page, pane, "max_tokens", 24)
    knob(page, 0, "steps", 24)
    page.click("#run-all")
    for pane in (0, 1):
        page.wait_for_selector(f'.pane[data-pane="{pane}"] .canvas[data-state="done"]',
                               timeout=30_000)
        assert page.inner_text(f'.pane[data-pane="{pane}"] .final') is not None
    shot = os.environ.get("DLM_PLAYGROUND_SHOT")
    if shot:  # docs/playground.png is made by benchmarks/playground_shot.py with a trained model
        page.screenshot(path=shot, full_page=True)
    knob(page, 0, "steps", 0)
    page.click('.pane[data-pane="0"] .run')
    page.wait_for_selector('.pane[data-pane="0"] .error:not([hidden])')
    assert "(steps)" in page.inner_text('.pane[data-pane="0"] .error')
    assert page.errors == [] or all("400" in e for e in page.errors)


def test_the_page_uses_nothing_from_another_origin():
    static = Path(__file__).parents[2] / "src" / "dlm" / "serve" / "static"
    for f in static.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text, f.name
