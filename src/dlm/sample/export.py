"""Export a sampling ``Trace``: raw JSON, or one self-contained HTML page that replays it.

The HTML page carries the trace itself (``Trace.to_dict()``) and a table of how each token id
used looks on screen, as JSON in a ``<script type="application/json" id="dlm-trace">`` tag;
inline JavaScript rebuilds the canvas after any step with the same rule as ``Trace.state_at``
(per step: commits first, then re-masks). Nothing is fetched from the network, so the file can be
mailed or opened offline.

    write_trace(trace, tokenizer, "run.html")   # animated replay
    write_trace(trace, tokenizer, "run.json")   # the raw trace, Trace.from_dict(json.load(...))
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DLMError
from .trace import Trace

if TYPE_CHECKING:
    from ..data.tokenizer import Tokenizer

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.2em; margin: 0 0 .6em; }
#controls { display: flex; flex-wrap: wrap; gap: .5em; align-items: center; margin-bottom: .6em; }
#slider { flex: 1 1 16em; }
#header { font-family: ui-monospace, Menlo, Consolas, monospace; color: #444; margin-bottom: .6em; }
#canvas { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap;
  overflow-wrap: anywhere; line-height: 1.7; border: 1px solid #ddd; border-radius: 4px;
  padding: .8em; }
#legend { margin-top: .6em; font-size: .9em; color: #555; }
#legend span { margin-right: 1.2em; font-family: ui-monospace, Menlo, Consolas, monospace; }
.mask { color: #bbb; }
.prompt { font-weight: bold; }
.fixed { color: #666; text-decoration: underline; text-decoration-color: #aaa; }
.new { background: #ffe866; }
.rm { background: #e5484d; color: #fff; }
.empty { padding-left: .35em; }
"""

_BODY = """
<div id="controls">
<button id="play" type="button">&#9654; play</button>
<button id="prev" type="button">&#9664; prev</button>
<input id="slider" type="range" min="0" max="0" step="1" value="0" aria-label="step">
<button id="next" type="button">next &#9654;</button>
<label>speed <select id="speed">
<option value="1">1 step/s</option><option value="2">2 steps/s</option>
<option value="5">5 steps/s</option><option value="10" selected>10 steps/s</option>
<option value="25">25 steps/s</option><option value="60">60 steps/s</option>
</select></label>
<label id="row-label" hidden>row <select id="row"></select></label>
</div>
<div id="header"></div>
<div id="canvas"></div>
<div id="legend"><span class="prompt">prompt</span><span class="fixed">fixed</span>
<span class="new">committed this step</span><span class="mask rm">re-masked this step</span>
<span class="mask">&middot; masked</span></div>
"""

# Pure functions first (dlmState, dlmCells, dlmHeader: testable without a browser), then the UI.
_SCRIPT = r"""
"use strict";

// Canvas (token ids) of one row after `step` steps: the rule of Trace.state_at, per step the
// commits (positions -> tokens) first, then the re-masked positions set back to MASK.
function dlmState(trace, step, row) {
  const canvas = trace.initial[row].slice();
  for (const s of trace.steps.slice(0, step)) {
    const pos = s.positions[row] || [], tok = s.tokens[row] || [];
    for (let i = 0; i < Math.min(pos.length, tok.length); i++) canvas[pos[i]] = tok[i];
    for (const p of (s.remasked || [])[row] || []) canvas[p] = trace.mask_id;
  }
  return canvas;
}

// One {id, text, cls} per slot after `step` steps. cls: "mask", "prompt" or "fixed" (non-mask
// in `initial` beyond the prompt and untouched since), plus "new" / "rm" for the slots committed
// / re-masked by step `step`, plus "empty" when the token shows as nothing (EOS, PAD).
function dlmCells(trace, text, step, row) {
  const canvas = dlmState(trace, step, row), init = trace.initial[row];
  const plen = trace.prompt_lengths[row], mask = trace.mask_id;
  const touched = new Set(), now = new Map();
  trace.steps.slice(0, step).forEach((s, i) => {
    const last = i === step - 1;
    for (const p of s.positions[row] || []) { touched.add(p); if (last) now.set(p, "new"); }
    for (const p of (s.remasked || [])[row] || []) { touched.add(p); if (last) now.set(p, "rm"); }
  });
  return canvas.map((id, p) => {
    const base = id === mask ? "mask" : p < plen ? "prompt"
      : init[p] !== mask && !touched.has(p) ? "fixed" : "";
    const t = id === mask ? (text[mask] || "\u00b7") : (text[id] ?? "");
    const cls = [base, now.get(p) || "", t === "" ? "empty" : ""].filter(Boolean).join(" ");
    return { id: id, text: t, cls: cls };
  });
}

// The line above the canvas: kind, step k / n, block, committed / re-masked now, masks left.
function dlmHeader(trace, step, row) {
  const n = trace.steps.length, s = step > 0 ? trace.steps[step - 1] : null;
  const left = dlmState(trace, step, row).filter((id) => id === trace.mask_id).length;
  const committed = s ? (s.positions[row] || []).length : 0;
  const remasked = s ? ((s.remasked || [])[row] || []).length : 0;
  return trace.kind + " \u00b7 step " + step + " / " + n + " \u00b7 block " +
    (s ? s.block : "-") + " \u00b7 committed " + committed + " \u00b7 re-masked " + remasked +
    " \u00b7 masks left " + left;
}

function dlmMain() {
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("dlm-trace").textContent);
  const trace = data.trace, text = data.tokens, n = trace.steps.length;
  const slider = $("slider"), play = $("play"), speed = $("speed"), rowSelect = $("row");
  let step = 0, row = 0, timer = null;
  slider.max = String(n);
  if (trace.initial.length > 1) {
    trace.initial.forEach((_, b) => {
      const option = document.createElement("option");
      option.value = String(b);
      option.textContent = "row " + b;
      rowSelect.appendChild(option);
    });
    $("row-label").hidden = false;
  }
  function render() {
    slider.value = String(step);
    $("header").textContent = dlmHeader(trace, step, row);
    const frag = document.createDocumentFragment();
    dlmCells(trace, text, step, row).forEach((c, p) => {
      const span = document.createElement("span");
      span.className = c.cls;
      span.textContent = c.text;
      span.title = "position " + p + ", token " + c.id;
      frag.appendChild(span);
    });
    $("canvas").replaceChildren(frag);
  }
  function go(k) { step = Math.max(0, Math.min(n, k)); render(); }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    play.textContent = "\u25b6 play";
  }
  function start() {
    if (step >= n) go(0);
    play.textContent = "\u275a\u275a pause";
    timer = setInterval(() => { go(step + 1); if (step >= n) stop(); },
                        1000 / Number(speed.value));
  }
  play.addEventListener("click", () => (timer === null ? start() : stop()));
  $("prev").addEventListener("click", () => { stop(); go(step - 1); });
  $("next").addEventListener("click", () => { stop(); go(step + 1); });
  slider.addEventListener("input", () => { stop(); go(Number(slider.value)); });
  speed.addEventListener("change", () => { if (timer !== null) { stop(); start(); } });
  rowSelect.addEventListener("change", () => { row = Number(rowSelect.value); render(); });
  render();
}

if (typeof document !== "undefined") dlmMain();
"""


def _token_table(trace: Trace, tokenizer: Tokenizer) -> dict[int, str]:
    """``{id: token_text(id)}`` for every id in the trace (initial canvases, commits, MASK)."""
    ids = {trace.mask_id}
    for row in trace.initial:
        ids.update(row)
    for s in trace.steps:
        for toks in s.tokens:
            ids.update(toks)
    return {int(i): tokenizer.token_text(int(i)) for i in sorted(ids)}


def trace_to_html(trace: Trace, tokenizer: Tokenizer, title: str = "dlm denoising trace") -> str:
    """One self-contained HTML document (no network) that replays ``trace`` step by step.

    Only ``tokenizer.token_text`` is used. The page has play/pause, a step slider, prev/next, a
    speed selector and, for several rows, a row selector.

        Path("trace.html").write_text(trace_to_html(trace, tok), encoding="utf-8")
    """
    data = json.dumps({"tokens": _token_table(trace, tokenizer), "trace": trace.to_dict()},
                      separators=(",", ":"))
    # Inside <script> only "</script" (and "<!--") matter; "\u003c" is "<" to JSON.parse, so
    # escaping every "<" keeps any token text (e.g. "</script>") from closing the tag.
    data = data.replace("<", "\\u003c")
    t = html.escape(title)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{t}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n"
            f"{_BODY}\n<script type=\"application/json\" id=\"dlm-trace\">{data}</script>\n"
            f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def write_trace(trace: Trace, tokenizer: Tokenizer, path: str | Path) -> None:
    """Write ``trace`` to ``path``: ``.html`` an animated replay page, ``.json`` the raw trace."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".html":
        text = trace_to_html(trace, tokenizer)
    elif suffix == ".json":
        text = trace.to_json()
    else:
        raise DLMError(f"cannot write a trace to {path}: the name must end in .html (animated "
                       f"replay) or .json (raw trace)")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise DLMError(f"cannot write trace to {path}: {e.strerror or e}") from None
