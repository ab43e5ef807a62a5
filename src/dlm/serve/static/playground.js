// The dlm playground: each pane streams /v1/dlm/denoise (the engine's step events) and draws
// the canvas as it denoises; a finished run can be replayed step by step and downloaded.
"use strict";

const KNOBS = [  // [name, type, default or "", choices]: SampleConfig fields sent as-is
  ["max_tokens", "int", 64], ["steps", "int", 32], ["block_length", "int", ""],
  ["temperature", "float", 0], ["top_p", "float", ""], ["top_k", "int", ""],
  ["remasking", "select", "low_confidence",
    ["low_confidence", "random", "margin", "entropy", "origin"]],
  ["transfer", "select", "even", ["even", "linear", "cosine", "dream"]],
  ["threshold", "float", ""], ["cache", "select", "", ["", "none", "prefix", "dual", "exact"]],
  ["cfg_scale", "float", ""], ["remask_eta", "float", ""], ["alg_temp", "float", ""],
  ["min_length", "int", ""], ["seed", "int", 0],
];
const HINTS = {
  prompt: "The model continues the prompt.",
  chat: "One user message; the checkpoint's chat template wraps it.",
  infill: "A template: [MASK] one token, [MASK:n] exactly n, [MASK:<=n] up to n; " +
          "the text around the spans is kept.",
};
const EXAMPLES = { prompt: "ROMEO:\n", chat: "Who is Juliet?",
                   infill: "But soft, what [MASK:6] through yonder window breaks?" };

let models = [];

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = document.getElementById("api-key").value;
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function loadModels() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
    models = body.data;
    status.textContent = models.length + " model" + (models.length === 1 ? "" : "s");
    status.classList.remove("bad");
    document.querySelectorAll(".pane .model").forEach(fillModels);
  } catch (e) {
    status.textContent = "cannot list models: " + e.message;
    status.classList.add("bad");
    setTimeout(loadModels, 1000);
  }
}

function fillModels(select) {
  const was = select.value;
  select.innerHTML = "";
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = m.id + " (" + m.dlm.kind + ")";
    select.appendChild(o);
  }
  if (was && models.some(m => m.id === was)) select.value = was;
  else if (select.dataset.prefer && models[+select.dataset.prefer])
    select.value = models[+select.dataset.prefer].id;
}

// Server-Sent Events over a POST body (EventSource cannot POST): data lines only.
async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter(l => l.startsWith("data: "))
        .map(l => l.slice(6)).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

class Pane {
  constructor(index) {
    this.root = document.getElementById("pane-template").content.firstElementChild
      .cloneNode(true);
    this.root.dataset.pane = String(index);
    this.$ = sel => this.root.querySelector(sel);
    const tabs = this.root.querySelectorAll(".tabs input");
    tabs.forEach(t => { t.name = "mode-" + index; t.addEventListener("change", () => this.mode()); });
    const grid = this.$(".knob-grid");
    for (const [name, type, value, choices] of KNOBS) {
      const label = document.createElement("label");
      label.textContent = name;
      let input;
      if (type === "select") {
        input = document.createElement("select");
        for (const c of choices) {
          const o = document.createElement("option");
          o.value = c; o.textContent = c || "(default)";
          input.appendChild(o);
        }
      } else {
        input = document.createElement("input");
        input.type = "number";
        input.step = type === "int" ? "1" : "any";
        input.placeholder = "default";
      }
      input.value = value;
      input.dataset.knob = name;
      input.dataset.type = type;
      label.appendChild(input);
      grid.appendChild(label);
    }
    this.$(".model").dataset.prefer = String(index);
    fillModels(this.$(".model"));
    this.$(".run").addEventListener("click", () => this.run());
    this.$(".stop").addEventListener("click", () => this.abort && this.abort.abort());
    this.$(".slider").addEventListener("input", e => this.replay(+e.target.value));
    this.$(".json").addEventListener("click", () => this.download("json"));
    this.$(".html").addEventListener("click", () => this.download("html"));
    this.mode();
  }

  mode() {
    const m = this.root.querySelector(".tabs input:checked").value;
    const input = this.$(".input");
    if (!input.value || Object.values(EXAMPLES).includes(input.value)) input.value = EXAMPLES[m];
    this.$(".hint").textContent = HINTS[m];
    return m;
  }

  body() {
    const mode = this.mode();
    const text = this.$(".input").value;
    const body = { model: this.$(".model").value };
    if (mode === "prompt") body.prompt = text;
    else if (mode === "chat") body.messages = [{ role: "user", content: text }];
    else body.template = text;
    this.root.querySelectorAll("[data-knob]").forEach(el => {
      if (el.value === "") return;
      const t = el.dataset.type;
      body[el.dataset.knob] = t === "int" ? parseInt(el.value, 10)
        : t === "float" ? parseFloat(el.value) : el.value;
    });
    if (mode === "infill") delete body.max_tokens;
    return body;
  }

  async run() {
    const body = this.body();
    this.abort = new AbortController();
    this.$(".run").disabled = true;
    this.$(".stop").disabled = false;
    this.$(".error").hidden = true;
    this.$(".final").hidden = true;
    this.$(".replay").hidden = true;
    const canvas = this.$(".canvas");
    canvas.dataset.state = "running";
    const t0 = performance.now();
    let committed = 0;
    try {
      const r = await fetch("/v1/dlm/denoise", { method: "POST", headers: headers(),
        body: JSON.stringify(body), signal: this.abort.signal });
      if (!r.ok) {
        const e = await r.json();
        throw new Error(e.error ? e.error.message + (e.error.param ? " (" + e.error.param + ")"
          : "") : r.statusText);
      }
      for await (const ev of sse(r)) {
        if (ev.type === "start") this.start(ev);
        else if (ev.type === "step") {
          const e = ev.events.find(x => x.row === 0);
          if (!e) continue;
          committed += e.positions.length;
          this.step(e);
          const secs = (performance.now() - t0) / 1000;
          this.stats(e.step + 1, this.planned, null, committed / secs);
        } else if (ev.type === "done") {
          this.done(ev, (performance.now() - t0) / 1000);
        } else if (ev.type === "error") throw new Error(ev.error.message);
      }
    } catch (e) {
      if (e.name !== "AbortError") this.fail(e.message);
      canvas.dataset.state = e.name === "AbortError" ? "stopped" : "error";
    } finally {
      this.$(".run").disabled = false;
      this.$(".stop").disabled = true;
    }
  }

  start(ev) {
    const row = ev.rows[0];
    this.maskId = ev.mask_id;
    this.answer = row.answer;
    this.planned = row.steps;
    this.tokens = row.tokens.slice();
    this.texts = row.texts.slice();
    this.given = row.tokens.map(t => t !== ev.mask_id);
    this.vocab = new Map(row.tokens.map((t, i) => [t, row.texts[i]]));
    this.prevNew = [];
    const canvas = this.$(".canvas");
    canvas.innerHTML = "";
    this.cells = this.tokens.map((t, i) => {
      const span = document.createElement("span");
      span.className = "tok " + (this.given[i] ? "given" : "mask");
      span.textContent = this.given[i] ? this.texts[i] : "\u2592";
      canvas.appendChild(span);
      return span;
    });
    canvas.dataset.step = "0";
    canvas.dataset.masked = String(this.tokens.filter(t => t === this.maskId).length);
  }

  step(e) {
    for (const i of this.prevNew) if (this.tokens[i] !== this.maskId)
      this.cells[i].className = "tok kept";
    e.positions.forEach((p, j) => {
      this.vocab.set(e.tokens[j], e.texts[j]);
      this.tokens[p] = e.tokens[j];
      this.cells[p].textContent = e.texts[j];
      this.cells[p].className = "tok new";
    });
    for (const p of e.remasked) {
      this.tokens[p] = this.maskId;
      this.cells[p].textContent = "\u2592";
      this.cells[p].className = "tok remasked";
    }
    this.prevNew = e.positions.concat(e.remasked);
    const canvas = this.$(".canvas");
    canvas.dataset.step = String(e.step + 1);
    canvas.dataset.masked = String(e.masks_left);
  }

  stats(step, steps, nfe, rate) {
    this.$(".stats").textContent = "step " + step + (steps ? "/" + steps : "") +
      (nfe !== null ? " · NFE " + nfe : "") + " · " + rate.toFixed(1) + " tok/s";
  }

  done(ev, secs) {
    const canvas = this.$(".canvas");
    canvas.dataset.state = "done";
    for (const i of this.prevNew) if (this.tokens[i] !== this.maskId)
      this.cells[i].className = "tok kept";
    const u = ev.usage;
    this.stats(u.dlm.steps, this.planned, u.dlm.nfe, u.completion_tokens / secs);
    const final = this.$(".final");
    final.textContent = ev.text[0];
    final.hidden = false;
    this.trace = ev.trace;
    if (this.trace) {
      const slider = this.$(".slider");
      slider.max = String(this.trace.steps.length);
      slider.value = slider.max;
      this.$(".replay-step").textContent = slider.max + "/" + slider.max;
      this.$(".replay").hidden = false;
    }
  }

  // The canvas after `n` steps of the finished trace (commits, then re-masks: Trace.state_at).
  replay(n) {
    const tr = this.trace;
    const row = tr.initial[0].slice();
    for (const s of tr.steps.slice(0, n)) {
      s.positions[0].forEach((p, j) => { row[p] = s.tokens[0][j]; });
      for (const p of (s.remasked[0] || [])) row[p] = tr.mask_id;
    }
    const last = n > 0 ? tr.steps[n - 1] : null;
    const fresh = new Set(last ? last.positions[0] : []);
    const gone = new Set(last && last.remasked.length ? last.remasked[0] : []);
    row.forEach((t, i) => {
      const cell = this.cells[i];
      if (!cell) return;
      if (this.given[i]) return;
      if (t === tr.mask_id) {
        cell.textContent = "\u2592";
        cell.className = "tok " + (gone.has(i) ? "remasked" : "mask");
      } else {
        cell.textContent = this.textOf(t);
        cell.className = "tok " + (fresh.has(i) ? "new" : "kept");
      }
    });
    this.$(".replay-step").textContent = n + "/" + tr.steps.length;
    this.$(".canvas").dataset.step = String(n);
  }

  textOf(t) {
    return this.vocab.has(t) ? this.vocab.get(t) : "?";
  }

  async download(kind) {
    let blob;
    if (kind === "json") {
      blob = new Blob([JSON.stringify(this.trace)], { type: "application/json" });
    } else {
      const r = await fetch("/v1/dlm/trace.html", { method: "POST", headers: headers(),
        body: JSON.stringify({ model: this.$(".model").value, trace: this.trace }) });
      if (!r.ok) return this.fail("cannot build the HTML trace");
      blob = await r.blob();
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "dlm-trace." + kind;
    a.click();
    URL.revokeObjectURL(a.href);
  }

  fail(message) {
    const el = this.$(".error");
    el.textContent = message;
    el.hidden = false;
  }
}

function main() {
  const panes = document.getElementById("panes");
  const all = [new Pane(0)];
  panes.appendChild(all[0].root);
  document.getElementById("compare").addEventListener("change", e => {
    if (e.target.checked && all.length === 1) {
      all.push(new Pane(1));
      panes.appendChild(all[1].root);
    }
    if (all[1]) all[1].root.hidden = !e.target.checked;
    document.getElementById("run-all").hidden = !e.target.checked;
    panes.classList.toggle("two", e.target.checked);
  });
  // Ctrl/Cmd+Enter runs every visible pane at once (two runs side by side stream together)
  document.addEventListener("keydown", e => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey))
      all.filter(p => !p.root.hidden).forEach(p => p.run());
  });
  document.getElementById("run-all").addEventListener("click",
    () => all.filter(p => !p.root.hidden).forEach(p => p.run()));
  document.getElementById("api-key").addEventListener("change", loadModels);
  loadModels();
  window.dlmPanes = all;
}

main();
