"""HTML / JSON export of a sampling trace: self-contained, escaped, and replaying exactly like
``Trace.state_at`` (checked in Python from the embedded JSON, and in node when it is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from dlm.data.tokenizer import byte_tokenizer
from dlm.errors import DLMError
from dlm.sample.export import trace_to_html, write_trace
from dlm.sample.trace import Trace, TraceStep

M, EOS, PAD = 256, 257, 258  # byte tokenizer specials
SCRIPT_TEXT = "</script><script>alert(1)</script><!--"


def b(s: str) -> list[int]:
    return list(s.encode())


def make_trace() -> Trace:
    """Two rows of 8: row 0 a prompt "hi" + MASKs; row 1 an infill template with fixed "\\n" and
    " " beyond its 1-token prompt. Step 1 re-masks an earlier commit, step 2 re-masks a slot
    committed in the same step (the commit must lose), step 3 re-masks nothing."""
    initial = [b("hi") + [M] * 6, b("a") + [M, M] + b("\n") + [M] + b(" ") + [M, M]]

    def step(i, block, pos, tok, remasked):
        return TraceStep(i, block, pos, tok, [[0.5] * len(p) for p in pos], remasked)

    steps = [
        step(0, 0, [[2, 3], [1, 2]], [b("! "), b("bc")], []),
        step(1, 0, [[4], [4]], [b("x"), b("d")], [[3], []]),
        step(2, 1, [[3, 5], [6, 7]], [b("yz"), [ord("e"), EOS]], [[2], [7]]),
        step(3, 1, [[2, 6, 7], [7]], [b("\n") + b("w") + [PAD], [EOS]], []),
    ]
    return Trace("remdm", M, initial, [2, 1], steps)


class _ScriptTokenizer:
    """The byte tokenizer, except that "x" shows as a text that would close a <script> tag."""

    def __init__(self):
        self.inner = byte_tokenizer()

    def token_text(self, token_id: int) -> str:
        return SCRIPT_TEXT if token_id == ord("x") else self.inner.token_text(token_id)


class _Collector(HTMLParser):
    """Every script tag (attrs, content), every id attribute, every src/href attribute."""

    def __init__(self):
        super().__init__()
        self.scripts: list[tuple[dict, str]] = []
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        self.links += [(k, v) for k, v in attrs.items() if k in ("src", "href")]
        if tag == "script":
            self.scripts.append((attrs, ""))
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse(doc: str) -> _Collector:
    c = _Collector()
    c.feed(doc)
    c.close()
    return c


def embedded(doc: str) -> tuple[dict, str]:
    """(the parsed JSON of the dlm-trace tag, the inline JS); asserts there are exactly two."""
    c = parse(doc)
    assert len(c.scripts) == 2
    (data_attrs, data_text), (js_attrs, js_text) = c.scripts
    assert data_attrs == {"type": "application/json", "id": "dlm-trace"}
    assert js_attrs == {}
    return json.loads(data_text), js_text


def replay(d: dict, step: int) -> list[list[int]]:
    """Trace.state_at's rule, applied to the embedded JSON (not to the Trace object)."""
    t = d["trace"]
    canvas = [list(r) for r in t["initial"]]
    for s in t["steps"][:step]:
        for row, (pos, tok) in enumerate(zip(s["positions"], s["tokens"])):
            for p, tk in zip(pos, tok):
                canvas[row][p] = tk
        for row, pos in enumerate(s["remasked"]):
            for p in pos:
                canvas[row][p] = t["mask_id"]
    return canvas


def test_html_is_self_contained_and_replays_like_state_at():
    trace, tok = make_trace(), byte_tokenizer()
    doc = trace_to_html(trace, tok)
    assert "http://" not in doc and "https://" not in doc
    assert "url(" not in doc and "@import" not in doc
    c = parse(doc)
    assert c.links == []  # no src= / href= anywhere
    d, _ = embedded(doc)
    assert d["trace"] == trace.to_dict()
    assert Trace.from_dict(d["trace"]) == trace
    used = {M} | {i for r in trace.initial for i in r} | {
        i for s in trace.steps for r in s.tokens for i in r}
    assert {int(k): v for k, v in d["tokens"].items()} == {i: tok.token_text(i) for i in used}
    assert d["tokens"][str(M)] == "·" and d["tokens"][str(EOS)] == ""
    for k in range(len(trace.steps) + 1):
        assert replay(d, k) == trace.state_at(k)
    # the fixture exercises both re-mask cases: an older commit and a same-step commit
    assert trace.state_at(2)[0][3] == M and trace.state_at(3)[1][7] == M
    assert trace.state_at(4)[1][7] == EOS


def test_script_closing_token_text_is_escaped():
    trace = make_trace()
    doc = trace_to_html(trace, _ScriptTokenizer(), title="<b>x</b> & co")
    assert "</script><script>alert" not in doc and "<!--" not in doc
    assert "<title>&lt;b&gt;x&lt;/b&gt; &amp; co</title>" in doc
    d, js = embedded(doc)  # exactly two script tags: nothing was closed early
    assert d["tokens"][str(ord("x"))] == SCRIPT_TEXT
    assert "function dlmState(" in js
    for k in range(len(trace.steps) + 1):
        assert replay(d, k) == trace.state_at(k)


def test_script_ids_exist_in_page():
    doc = trace_to_html(make_trace(), byte_tokenizer())
    c = parse(doc)
    _, js = embedded(doc)
    used = set(re.findall(r'\$\("([\w-]+)"\)', js))
    assert {"dlm-trace", "canvas", "header", "slider", "play", "prev", "next", "speed", "row",
            "row-label"} <= used
    assert used <= c.ids


def test_write_trace_html_and_json(tmp_path):
    trace, tok = make_trace(), byte_tokenizer()
    write_trace(trace, tok, tmp_path / "t.html")
    assert (tmp_path / "t.html").read_text(encoding="utf-8") == trace_to_html(trace, tok)
    write_trace(trace, tok, str(tmp_path / "t.json"))
    assert Trace.from_dict(json.loads((tmp_path / "t.json").read_text())) == trace
    with pytest.raises(DLMError, match=r"\.html .*\.json"):
        write_trace(trace, tok, tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()
    with pytest.raises(DLMError, match="cannot write"):
        write_trace(trace, tok, tmp_path / "missing" / "t.json")


# A minimal DOM, enough for dlmMain(): elements by id, created spans, click/change handlers.
_NODE_HARNESS = r"""
const fs = require("fs");
class El {
  constructor(tag) {
    Object.assign(this, { tag, children: [], listeners: {}, textContent: "", value: "",
                          hidden: tag === "#row-label", className: "", title: "" });
  }
  appendChild(c) {
    if (c.tag === "#fragment") this.children.push(...c.children); else this.children.push(c);
    return c;
  }
  replaceChildren(...cs) { this.children = []; cs.forEach((c) => this.appendChild(c)); }
  addEventListener(type, f) { (this.listeners[type] ||= []).push(f); }
  fire(type) { (this.listeners[type] || []).forEach((f) => f({ target: this })); }
}
const els = {};
globalThis.document = {
  getElementById: (id) => (els[id] ||= new El("#" + id)),
  createElement: (tag) => new El(tag),
  createDocumentFragment: () => new El("#fragment"),
};
document.getElementById("dlm-trace").textContent = fs.readFileSync(0, "utf8");
document.getElementById("speed").value = "10";
"""

_NODE_CHECKS = r"""
const data = JSON.parse(els["dlm-trace"].textContent), trace = data.trace;
const out = { states: [], cells: [], ui: {} };
for (let k = 0; k <= trace.steps.length; k++) {
  out.states.push(trace.initial.map((_, r) => dlmState(trace, k, r)));
  out.cells.push(trace.initial.map((_, r) => dlmCells(trace, data.tokens, k, r)));
}
const shown = () => els.canvas.children.map((s) => [s.textContent, s.className]);
out.ui.rows = els.row.children.length;
out.ui.rowHidden = els["row-label"].hidden;
out.ui.max = els.slider.max;
out.ui.header0 = els.header.textContent;
out.ui.shown0 = shown();
els.next.fire("click"); els.next.fire("click");
out.ui.header2 = els.header.textContent;
out.ui.slider2 = els.slider.value;
els.row.value = "1"; els.row.fire("change");
out.ui.shown2row1 = shown();
els.play.fire("click"); out.ui.playing = els.play.textContent;
els.play.fire("click"); out.ui.paused = els.play.textContent;
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None,
                    reason="node is not on PATH: the inline JavaScript replay cannot be run")
def test_inline_js_replay_in_node(tmp_path):
    trace = make_trace()
    doc = trace_to_html(trace, byte_tokenizer())
    c = parse(doc)
    json_text, js = c.scripts[0][1], c.scripts[1][1]
    script = tmp_path / "page.js"
    script.write_text(_NODE_HARNESS + js + _NODE_CHECKS, encoding="utf-8")
    res = subprocess.run([shutil.which("node"), str(script)], input=json_text,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)

    n = len(trace.steps)
    for k in range(n + 1):
        assert out["states"][k] == trace.state_at(k)
    assert out["states"][n] == trace.state_at()

    def classes(k, row):
        return [set(cell["cls"].split()) for cell in out["cells"][k][row]]

    c0 = classes(0, 1)  # row 1 before any step: prompt, masks, fixed "\n" and " "
    assert c0[0] == {"prompt"} and c0[1] == {"mask"} and c0[3] == {"fixed"} == c0[5]
    assert [cell["text"] for cell in out["cells"][0][1]] == ["a", "·", "·", "\n", "·", " ", "·",
                                                            "·"]
    c2 = classes(3, 0)  # row 0 after step 2: commits 3 and 5 this step, 2 re-masked
    assert c2[0] == c2[1] == {"prompt"}
    assert c2[3] == c2[5] == {"new"} and c2[2] == {"mask", "rm"} and c2[4] == set()
    assert c2[6] == c2[7] == {"mask"}
    c3 = classes(4, 1)  # row 1 after step 3: the same-step re-mask of step 2 is now EOS
    assert c3[7] == {"new", "empty"} and c3[3] == {"fixed"}
    assert classes(4, 0)[2] == {"new"} and out["cells"][4][0][2]["text"] == "\n"
    assert "rm" not in set().union(*classes(4, 0))  # step 3 re-masks nothing

    ui = out["ui"]
    assert ui["rows"] == 2 and ui["rowHidden"] is False and ui["max"] == str(n)
    assert ui["header0"] == ("remdm · step 0 / 4 · block - · committed 0 · re-masked 0 · "
                             "masks left 6")
    assert ui["shown0"][:3] == [["h", "prompt"], ["i", "prompt"], ["·", "mask"]]
    assert ui["header2"] == ("remdm · step 2 / 4 · block 0 · committed 1 · re-masked 1 · "
                             "masks left 4")
    assert ui["slider2"] == "2"
    assert [t for t, _ in ui["shown2row1"]] == ["a", "b", "c", "\n", "d", " ", "·", "·"]
    assert ui["playing"].endswith("pause") and ui["paused"].endswith("play")
