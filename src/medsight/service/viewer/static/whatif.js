// medsight "What if" panel: occlude / keep a drawn box and re-run the classifier, change a
// risk model's inputs, brush / erase the AI mask and save it as a new SEG version.
// Talks only to the what-if API (/api/jobs/{job}/whatif/..., /segmentation/...); plain JS.
// An occlusion answer is shown with what it cannot say: the edited image is unlike the training
// images (the service's caveat, and the OOD score against the model's threshold when the model
// has one), and whether the decision at the operating threshold flips.  The drawn box is
// described in the image's own pixels (width x height at column, row).
(function () {
  "use strict";
  const panel = document.getElementById("whatif");
  const image = document.getElementById("image");
  if (!panel || !image) return;
  const job = panel.dataset.job;
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, text = "") => {
    const e = document.createElement(tag);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
    if (text) e.textContent = text;
    return e;
  };
  // three decimals, never "1.000" / "0.000" for a value that is not exactly that (a clinician
  // reads 1.000 as certainty): "> 0.999" / "< 0.001" at the extremes
  const fmt = (v) => {
    if (v === null || v === undefined) return "-";
    const x = Number(v);
    if (x > 0.999 && x < 1) return "> 0.999";
    if (x < 0.001 && x > 0) return "< 0.001";
    return x.toFixed(3);
  };
  const signed = (v) => (v >= 0 ? "+" : "") + Number(v).toFixed(3);
  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      throw new Error(`${resp.status}: ${detail}`);
    }
    return data;
  }

  // drawing surface over the slice ---------------------------------------------------------
  const canvas = el("canvas", { id: "whatif-canvas", "aria-label": "what-if drawing layer" });
  const edited = el("img", { id: "whatif-mask", alt: "edited mask", class: "overlay" });
  edited.hidden = true;
  const stack = image.parentElement;
  stack.appendChild(edited);
  stack.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  let tool = "", box = null, drag = null, strokes = [], current = null, latest = null;

  function fit() {
    canvas.width = image.clientWidth;
    canvas.height = image.clientHeight;
    canvas.style.width = `${image.clientWidth}px`;
    canvas.style.height = `${image.clientHeight}px`;
    canvas.style.pointerEvents = tool ? "auto" : "none";
    redraw();
  }
  const scale = () => [image.naturalWidth / image.clientWidth, image.naturalHeight / image.clientHeight];
  function toIndex(ev) {
    const r = canvas.getBoundingClientRect(), [sx, sy] = scale();
    return [(ev.clientX - r.left) * sx, (ev.clientY - r.top) * sy];
  }
  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const [sx, sy] = scale();
    if (box) {
      ctx.strokeStyle = "#ffd60a";
      ctx.lineWidth = 2;
      ctx.strokeRect(box[0] / sx, box[1] / sy, (box[2] - box[0]) / sx, (box[3] - box[1]) / sy);
    }
    [...strokes, ...(current ? [current] : [])].forEach((s) => {
      ctx.strokeStyle = s.op === "brush" ? "rgba(40,200,255,.8)" : "rgba(255,255,255,.8)";
      ctx.lineWidth = (2 * s.radius) / sx;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      s.points.forEach(([i, j], n) => (n ? ctx.lineTo(i / sx, j / sy) : ctx.moveTo(i / sx, j / sy)));
      if (s.points.length === 1) ctx.lineTo(s.points[0][0] / sx + 0.01, s.points[0][1] / sy);
      ctx.stroke();
    });
  }
  canvas.addEventListener("mousedown", (ev) => {
    const p = toIndex(ev);
    if (tool === "box") drag = p;
    else if (tool === "brush" || tool === "erase") {
      current = { op: tool, slice: Number($("slice").value), radius: Number($("whatif-radius").value) || 2, points: [p] };
    }
    redraw();
  });
  canvas.addEventListener("mousemove", (ev) => {
    const p = toIndex(ev);
    if (tool === "box" && drag) {
      box = [Math.min(drag[0], p[0]), Math.min(drag[1], p[1]), Math.max(drag[0], p[0]), Math.max(drag[1], p[1])];
    } else if (current) current.points.push(p);
    redraw();
  });
  window.addEventListener("mouseup", () => {
    if (tool === "box" && drag && box) {
      box = [Math.floor(box[0]), Math.floor(box[1]), Math.ceil(box[2]), Math.ceil(box[3])];
      $("whatif-box").textContent = describeBox(box);
      $("whatif-run").disabled = false;
    }
    if (current) {
      strokes.push(current);
      $("whatif-save").disabled = !panel.dataset.canEdit;
      $("whatif-strokes").textContent = `${strokes.length} stroke(s) not saved`;
    }
    drag = null;
    current = null;
    redraw();
  });
  image.addEventListener("load", fit);
  window.addEventListener("resize", fit);
  // [i0, j0, i1, j1] (i: columns, j: rows of the slice shown, half-open) in the image's terms
  function describeBox(b) {
    const where = `box ${b[2] - b[0]} x ${b[3] - b[1]} px at column ${b[0]}, row ${b[1]}`;
    const slices = Number($("slice").max || 0);
    return slices > 0 ? `${where}, slice ${Number($("slice").value) + 1}` : where;
  }
  function setTool(name) {
    tool = tool === name ? "" : name;
    if (tool) image.scrollIntoView({ block: "center" }); // the image may be far above the tools
    panel.querySelectorAll("button[data-tool]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tool === tool)));
    fit();
  }

  // occlusion -------------------------------------------------------------------------------
  function occlusionSection(tools) {
    const sec = el("section", { id: "whatif-occlusion" });
    sec.appendChild(el("h3", {}, "Occlude a region"));
    if (!tools.findings.length) {
      sec.appendChild(el("p", {}, "No classifier finding to ask about."));
      return sec;
    }
    const pick = el("select", { id: "whatif-finding" });
    tools.findings.forEach((f) => pick.appendChild(el("option", { value: f.index }, `${f.label} (${f.package})`)));
    const mode = el("select", { id: "whatif-mode" });
    ["occlude", "keep"].forEach((m) => mode.appendChild(el("option", { value: m }, m)));
    const fill = el("select", { id: "whatif-fill" });
    ["mean", "zero", "blur"].forEach((m) => fill.appendChild(el("option", { value: m }, m)));
    const map = el("input", { type: "checkbox", id: "whatif-map-on" });
    const draw = el("button", { type: "button", "data-tool": "box", id: "whatif-draw-box" }, "Draw box");
    draw.addEventListener("click", () => setTool("box"));
    const run = el("button", { type: "button", id: "whatif-run" }, "Re-run model");
    run.disabled = true;
    run.addEventListener("click", async () => {
      const out = $("whatif-occlusion-result");
      out.textContent = "running...";
      try {
        const res = await post(`/api/jobs/${job}/whatif/occlusion`, {
          finding: Number(pick.value),
          region: { box, slice: Number($("slice").value) },
          mode: mode.value,
          fill: fill.value,
          sensitivity_map: map.checked,
        });
        if (res.abstained) out.textContent = `Withheld, no answer: ${res.message}`;
        else {
          out.textContent = Object.keys(res.difference).map((k) =>
            `${k}: ${fmt(res.original.probabilities[k])} -> ${fmt(res.changed.probabilities[k])} (${signed(res.difference[k])})`).join("; ");
        }
        showNotes(res);
        const fig = $("whatif-map-figure");
        fig.hidden = !res.sensitivity_map_png;
        if (res.sensitivity_map_png) $("whatif-map").src = `data:image/png;base64,${res.sensitivity_map_png}`;
      } catch (err) {
        out.textContent = `error ${err.message}`;
        $("whatif-occlusion-notes").textContent = "";
      }
    });
    const row = el("div", { class: "whatif-row" });
    [draw, el("span", { id: "whatif-box" }, "no box"), pick, mode, fill].forEach((x) => row.appendChild(x));
    const lab = el("label", {}, " occlusion map");
    lab.prepend(map);
    row.appendChild(lab);
    row.appendChild(run);
    sec.appendChild(row);
    sec.appendChild(el("p", { id: "whatif-occlusion-result", role: "status" }));
    sec.appendChild(el("ul", { id: "whatif-occlusion-notes", class: "whatif-notes" }));
    const fig = el("figure", { id: "whatif-map-figure", class: "whatif-map-figure" });
    fig.hidden = true;
    fig.appendChild(el("img", { id: "whatif-map", alt: "occlusion sensitivity map", class: "whatif-map" }));
    const bar = el("div", { class: "whatif-colorbar-row" });
    bar.appendChild(el("span", {}, "0"));
    bar.appendChild(el("span", { class: "whatif-colorbar", "aria-hidden": "true" }));
    bar.appendChild(el("span", {}, "1"));
    fig.appendChild(bar);
    fig.appendChild(el("figcaption", {}, "Occlusion sensitivity of the original image (MONAI): " +
      "how much the finding's score drops when a patch about 1/7 of the image wide is hidden " +
      "there; 0 (clear) the least, 1 (red) the most in this image (scaled to its own maximum, " +
      "not comparable between images). It shows where the model looks, not where the finding is."));
    sec.appendChild(fig);
    return sec;
  }
  // beside the numbers: the decision at the operating threshold, the OOD score, the caveat
  function showNotes(res) {
    const notes = $("whatif-occlusion-notes");
    notes.textContent = "";
    const yes = (p) => (p ? "positive" : "negative");
    (res.decisions || []).forEach((d) => {
      const at = d.threshold === null || d.threshold === undefined
        ? "at the operating threshold" : `at the operating threshold ${fmt(d.threshold)}`;
      const text = d.flipped
        ? `Decision ${at} flips: ${yes(d.before)} -> ${yes(d.after)} (${d.label}).`
        : `Decision ${at} unchanged: ${yes(d.before)} (${d.label}).`;
      notes.appendChild(el("li", { class: d.flipped ? "whatif-flip" : "whatif-same" }, text));
    });
    if (res.ood && res.ood.changed !== null && res.ood.changed !== undefined) {
      const over = res.ood.changed_over_threshold;
      notes.appendChild(el("li", { class: over ? "whatif-ood warning" : "whatif-ood" },
        `Unlike the training images (OOD score): ${res.ood.changed.toPrecision(3)} for the ` +
        `edited image, ${res.ood.original === null ? "-" : res.ood.original.toPrecision(3)} for ` +
        `the original; the model withholds its answer above ${res.ood.threshold.toPrecision(3)}.`));
    }
    if (res.caveat) notes.appendChild(el("li", { class: "whatif-caveat warning" }, res.caveat));
  }

  // risk --------------------------------------------------------------------------------------
  function riskSection(model) {
    const sec = el("section", { class: "whatif-risk", "data-package": model.package });
    sec.appendChild(el("h3", {}, `Risk inputs: ${model.package}`));
    const form = el("form", { class: "whatif-risk-form" });
    model.inputs.forEach((v) => {
      const lab = el("label", {}, `${v.name} `);
      let input;
      if (v.kind === "numeric") {
        input = el("input", { type: "number", name: v.name, step: "any" });
        if (v.min !== undefined) { input.min = v.min; input.max = v.max; input.title = `${v.min} to ${v.max} (${v.range_source})`; }
      } else {
        input = el("select", { name: v.name });
        input.appendChild(el("option", { value: "" }, "unknown"));
        (v.kind === "binary" ? [["0", "no"], ["1", "yes"]] : v.categories.map((c) => [c, c]))
          .forEach(([val, text]) => input.appendChild(el("option", { value: val }, text)));
      }
      lab.appendChild(input);
      form.appendChild(lab);
    });
    let baseline = null;
    const values = () => {
      const out = {};
      new FormData(form).forEach((val, key) => { if (val !== "") out[key] = val; });
      return out;
    };
    const result = el("p", { class: "whatif-risk-result", role: "status" });
    const setBase = el("button", { type: "button", class: "whatif-baseline" }, "Set as baseline");
    const ask = el("button", { type: "button", class: "whatif-ask" }, "What if");
    setBase.addEventListener("click", () => {
      baseline = values();
      result.textContent = "baseline set; change inputs and press What if";
    });
    ask.addEventListener("click", async () => {
      const now = values();
      const base = baseline || now;
      const inputs = {};
      Object.keys(model.inputs.reduce((a, v) => ({ ...a, [v.name]: 1 }), {})).forEach((k) => {
        if (now[k] !== base[k]) inputs[k] = now[k] === undefined ? null : now[k];
      });
      try {
        const res = await post(`/api/jobs/${job}/risk/whatif`, { package: model.package, baseline: base, inputs });
        if (res.difference === null || res.difference === undefined) {
          result.textContent = `Withheld, no answer: ${(res.withheld || []).join("; ")}`;
        } else {
          result.textContent = `${res.output}: ${fmt(res.original.value)} -> ${fmt(res.changed.value)} (${signed(res.difference)})`;
        }
      } catch (err) {
        result.textContent = `error ${err.message}`;
      }
    });
    form.appendChild(setBase);
    form.appendChild(ask);
    sec.appendChild(form);
    sec.appendChild(result);
    return sec;
  }

  // segmentation edits --------------------------------------------------------------------
  async function loadVersions(pkg) {
    const resp = await fetch(`/api/jobs/${job}/segmentation/versions?package=${encodeURIComponent(pkg)}`);
    if (!resp.ok) return;
    const list = await resp.json();
    const ul = $("whatif-versions");
    ul.textContent = "";
    list.forEach((v) => {
      const li = el("li", { "data-version": v.version }, `v${v.version} by ${v.by}${v.parent_version ? ` from v${v.parent_version}` : ""}${v.note ? `: ${v.note}` : ""} `);
      if (v.url) li.appendChild(el("a", { href: v.url }, "SEG"));
      ul.appendChild(li);
    });
    const last = list.length > 1 ? list[list.length - 1] : null;
    latest = last ? last.version : null;
    showEdited(pkg);
    showVersion(pkg, last);
  }
  function showEdited(pkg) {
    edited.hidden = !latest;
    // the edited version replaces the model's mask (drawn in the same label colours, so the
    // legend holds); both at once would show erased parts of v1 under v2
    const modelMask = $("mask");
    if (modelMask) modelMask.style.visibility = latest ? "hidden" : "";
    if (latest) edited.src = `/api/jobs/${job}/segmentation/versions/${latest}/masks/${$("slice").value}.png?package=${encodeURIComponent(pkg)}`;
  }
  const numbers = (ms) => (ms || []).map((m) => `${m.concept} ${Number(m.value).toPrecision(3)} ${m.unit}`).join(", ");
  // say which version the overlay and the findings' numbers show; once an edit is saved, the
  // findings table gets that version's measurements beside the model's (v1)
  function showVersion(pkg, last) {
    const shown = $("whatif-seg-shown");
    if (!last) {
      shown.textContent = "Overlay and findings: v1, the model's segmentation.";
      return;
    }
    const from = last.parent_version ? ` from v${last.parent_version}` : "";
    shown.textContent = `Overlay: v${last.version} (edited by ${last.by}${from}). ` +
      `Measurements of v${last.version}: ${numbers(last.measurements) || "none"}.`;
    document.querySelectorAll("#findings tbody tr").forEach((tr) => {
      const cells = tr.querySelectorAll("td");
      if (cells.length < 4 || cells[3].textContent.trim() !== pkg) return;
      const cell = cells[2];
      if (!cell.dataset.model) { // keep the model's numbers, labelled as v1
        cell.dataset.model = "v1";
        const v1 = el("div", { class: "whatif-v1" }, "v1 (model): ");
        while (cell.firstChild) v1.appendChild(cell.firstChild);
        cell.appendChild(v1);
      }
      let mine = cell.querySelector(".whatif-vn");
      if (!mine) {
        mine = el("div", { class: "whatif-vn" });
        cell.appendChild(mine);
      }
      mine.textContent = `v${last.version} (edited by ${last.by}): ${numbers(last.measurements) || "none"}`;
    });
  }
  function segSection(tools) {
    const sec = el("section", { id: "whatif-seg" });
    sec.appendChild(el("h3", {}, "Edit the segmentation"));
    const pkg = el("select", { id: "whatif-seg-package" });
    tools.segmentations.forEach((p) => pkg.appendChild(el("option", { value: p }, p)));
    const label = el("input", { type: "number", id: "whatif-label", value: "1", min: "1" });
    const radius = el("input", { type: "number", id: "whatif-radius", value: "3", min: "1", max: "50" });
    const brush = el("button", { type: "button", "data-tool": "brush", id: "whatif-brush" }, "Brush");
    const erase = el("button", { type: "button", "data-tool": "erase", id: "whatif-erase" }, "Erase");
    brush.addEventListener("click", () => setTool("brush"));
    erase.addEventListener("click", () => setTool("erase"));
    const save = el("button", { type: "button", id: "whatif-save" }, "Save as new version");
    save.disabled = true;
    const clear = el("button", { type: "button", id: "whatif-clear" }, "Discard strokes");
    clear.addEventListener("click", () => { strokes = []; $("whatif-strokes").textContent = ""; save.disabled = true; redraw(); });
    const out = el("div", { id: "whatif-seg-result", role: "status" });
    save.addEventListener("click", async () => {
      out.textContent = "saving...";
      try {
        const res = await post(`/api/jobs/${job}/segmentation/edit`, {
          package: pkg.value, label: Number(label.value), operations: strokes,
        });
        strokes = [];
        $("whatif-strokes").textContent = "";
        save.disabled = true;
        redraw();
        out.textContent = `saved v${res.version}: ` + numbers(res.measurements);
        await loadVersions(pkg.value);
      } catch (err) {
        out.textContent = `error ${err.message}`;
      }
    });
    const row = el("div", { class: "whatif-row" });
    const labLabel = el("label", {}, "label ");
    labLabel.appendChild(label);
    const labRadius = el("label", {}, "radius ");
    labRadius.appendChild(radius);
    [pkg, labLabel, labRadius, brush, erase, clear, save, el("span", { id: "whatif-strokes" })].forEach((x) => row.appendChild(x));
    sec.appendChild(row);
    if (!panel.dataset.canEdit) sec.appendChild(el("p", {}, "Saving a version needs a reviewer (radiologist)."));
    sec.appendChild(out);
    sec.appendChild(el("p", { id: "whatif-seg-shown", class: "whatif-shown" }));
    sec.appendChild(el("ul", { id: "whatif-versions" }));
    $("slice").addEventListener("input", () => showEdited(pkg.value));
    loadVersions(pkg.value);
    return sec;
  }

  fetch(`/api/jobs/${job}/whatif`).then((r) => (r.ok ? r.json() : null)).then((tools) => {
    if (!tools) return;
    if (tools.can_edit) panel.dataset.canEdit = "yes";
    panel.appendChild(occlusionSection(tools));
    tools.risk_models.forEach((m) => panel.appendChild(riskSection(m)));
    if (tools.segmentations.length) panel.appendChild(segSection(tools));
    fit();
    panel.dataset.ready = "yes";
  });
})();
