// medsight study view: slice scrolling, window/level, AI overlay toggle, accept / reject.
// The AI overlays follow the selected series: its masks (each label in its colour, with a
// legend), its heatmap slice by slice (with a colour bar) and the report pictures made on it.
(function () {
  "use strict";
  const root = document.getElementById("study");
  if (!root) return;
  const uid = root.dataset.uid, job = root.dataset.job, done = root.dataset.done === "yes";
  const $ = (id) => document.getElementById(id);
  let series = [], overlayOn = true;
  const overlays = {}; // series index -> what the models drew on it (GET /api/jobs/{id}/overlays)

  function loadOverlays(s) {
    if (!done || !job) return Promise.resolve({ models: [] });
    if (overlays[s]) return Promise.resolve(overlays[s]);
    return fetch(`/api/jobs/${job}/overlays?series=${s}`)
      .then((r) => (r.ok ? r.json() : { models: [] }))
      .then((info) => (overlays[s] = info));
  }
  function current() {
    return overlays[$("series").value || 0] || { models: [] };
  }
  function showLegend() {
    const info = current(), list = $("legend-labels");
    list.textContent = "";
    const masked = info.models.find((m) => m.mask), heat = info.models.find((m) => m.heatmap);
    (masked ? masked.labels : []).forEach((lab) => {
      const li = document.createElement("li"), sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.backgroundColor = lab.colour;
      li.dataset.colour = lab.colour;
      if (!lab.present) { li.className = "absent"; li.title = "not found in this study"; }
      li.appendChild(sw);
      li.appendChild(document.createTextNode(lab.name));
      list.appendChild(li);
    });
    $("legend-heat").hidden = !heat;
    if (heat) $("legend-heat-name").textContent = `${heat.package} heatmap`;
    const elsewhere = new Set(info.elsewhere || []);
    let away = 0;
    document.querySelectorAll("#heatmaps figure").forEach((f) => {
      f.hidden = elsewhere.has(f.dataset.file); // made on another series: not beside this one
      if (f.hidden) away += 1;
    });
    $("heatmaps-elsewhere").hidden = away === 0;
  }

  function imageUrl() {
    const s = $("series").value || 0, k = $("slice").value;
    const q = new URLSearchParams({ center: $("center").value, width: $("width").value });
    return `/api/studies/${uid}/series/${s}/slices/${k}.png?${q}`;
  }
  function draw() {
    const k = Number($("slice").value), n = Number($("slice").max) + 1;
    $("slice-label").textContent = `${k + 1}/${n}`;
    $("image").src = imageUrl();
    const mask = $("mask"), heat = $("heat"), info = current();
    const s = $("series").value || 0;
    const masked = info.models.find((m) => m.mask), heated = info.models.find((m) => m.heatmap);
    mask.dataset.series = s;
    if (masked) {
      delete mask.dataset.missing;
      mask.src = `/api/jobs/${job}/masks/${k}.png?series=${s}&model=${masked.model}`;
    } else {
      mask.dataset.missing = s; // no mask on this series (the models segmented another one)
    }
    if (heated) heat.src = `/api/jobs/${job}/heatmaps/${heated.model}/${k}.png`;
    mask.hidden = !(masked && overlayOn);
    heat.hidden = !(heated && overlayOn);
    $("legend").hidden = !(overlayOn && (masked || heated));
    $("heatmaps").hidden = !overlayOn;
  }
  // colour series (slices.py): shown in their own colours, window/level is for grey only
  function windowNote(s) {
    let note = $("window-note");
    if (!note) {
      note = document.createElement("span");
      note.id = "window-note";
      $("width").parentElement.after(note);
    }
    $("center").disabled = $("width").disabled = Boolean(s.colour);
    note.textContent = s.colour ? s.window_note : "";
  }
  function selectSeries() {
    const index = Number($("series").value) || 0, s = series[index];
    if (!s) return Promise.resolve();
    return loadOverlays(index).then(() => {
      if ((Number($("series").value) || 0) !== index) return; // another series was chosen
      $("slice").max = s.slices - 1;
      $("slice").value = Math.floor(s.slices / 2);
      $("center").value = Math.round(s.center);
      $("width").value = Math.round(s.width);
      windowNote(s);
      showLegend();
      draw();
    });
  }
  // no mask on this series (the models segmented another one): keep the overlay hidden
  $("mask").addEventListener("error", () => {
    $("mask").dataset.missing = $("mask").dataset.series;
    $("mask").hidden = true;
  });
  $("mask").addEventListener("load", () => {
    if ($("mask").dataset.missing === $("mask").dataset.series) delete $("mask").dataset.missing;
    $("mask").hidden = !overlayOn;
  });
  $("heat").addEventListener("error", () => { $("heat").hidden = true; });
  $("slice").addEventListener("input", draw);
  $("center").addEventListener("change", draw);
  $("width").addEventListener("change", draw);
  $("series").addEventListener("change", selectSeries);
  $("image").addEventListener("wheel", (e) => {
    e.preventDefault();
    const el = $("slice");
    el.value = Math.min(Number(el.max), Math.max(0, Number(el.value) + Math.sign(e.deltaY)));
    draw();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    const step = { ArrowUp: -1, ArrowDown: 1, PageUp: -5, PageDown: 5 }[e.key];
    if (step === undefined) return;
    e.preventDefault();
    const el = $("slice");
    el.value = Math.min(Number(el.max), Math.max(0, Number(el.value) + step));
    draw();
  });
  $("toggle-overlay").addEventListener("click", () => {
    overlayOn = !overlayOn;
    $("toggle-overlay").textContent = `AI overlay: ${overlayOn ? "on" : "off"}`;
    $("toggle-overlay").setAttribute("aria-pressed", String(overlayOn));
    draw();
  });
  document.querySelectorAll("#findings button[data-verdict]").forEach((btn) => {
    btn.addEventListener("click", async () => {
      const row = btn.closest("tr");
      const resp = await fetch(`/api/jobs/${job}/findings/${row.dataset.index}/feedback`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ verdict: btn.dataset.verdict }),
      });
      const label = row.querySelector(".verdict");
      label.textContent = resp.ok
        ? (btn.dataset.verdict === "confirm" ? "accepted" : "rejected")
        : `error ${resp.status}`;
    });
  });
  fetch(`/api/studies/${uid}/series`).then((r) => r.json()).then((list) => {
    series = list;
    list.forEach((s, i) => {
      const opt = document.createElement("option");
      opt.value = i;
      opt.textContent = `${s.modality} ${s.description || ""} (${s.slices})`;
      $("series").appendChild(opt);
    });
    // start on the series with the most slices
    let best = 0;
    list.forEach((s, i) => { if (s.slices > list[best].slices) best = i; });
    $("series").value = best;
    selectSeries().then(() => { root.dataset.ready = "yes"; });
  });
})();
