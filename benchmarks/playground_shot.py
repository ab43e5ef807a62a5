"""docs/playground.png: the playground comparing two runs of a trained checkpoint (by hand).

    python benchmarks/playground_shot.py                  # runs/demo (make demo trains it)
    python benchmarks/playground_shot.py runs/tiny --out /tmp/shot.png

Serves the checkpoint on 127.0.0.1 (a free port), opens the playground in Debian's chromium
(Playwright, headless), runs the same prompt with 12 and with 48 steps side by side, moves the
second pane's replay slider back to a middle step (masked, new and kept tokens in their
styles), and saves a screenshot.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default="runs/demo")
    ap.add_argument("--out", default="docs/playground.png")
    ap.add_argument("--prompt", default="**JULIET**  \nRomeo, Romeo!  \n\n**")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright
    from tests.serve.conftest import running, wait_ready

    from dlm.serve import model_ids
    from dlm.serve.app import create_app

    app = create_app(load=lambda: model_ids([args.checkpoint], ["demo"], device="cpu"))
    with running(app) as base, sync_playwright() as p:
        wait_ready(base)
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(base + "/")
        page.wait_for_function("document.querySelectorAll('.pane .model option').length > 0")
        page.check("#compare")
        for pane, steps in ((0, 12), (1, 48)):
            sel = f'.pane[data-pane="{pane}"]'
            page.fill(f"{sel} .input", args.prompt)
            page.fill(f'{sel} [data-knob="max_tokens"]', "96")
            page.fill(f'{sel} [data-knob="steps"]', str(steps))
            page.fill(f'{sel} [data-knob="block_length"]', "24")
            page.fill(f'{sel} [data-knob="temperature"]', "0.8")
        page.click("#run-all")
        for pane in (0, 1):
            page.wait_for_selector(f'.pane[data-pane="{pane}"] .canvas[data-state="done"]',
                                   timeout=120_000)
        page.fill('.pane[data-pane="1"] .slider', "22")
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
