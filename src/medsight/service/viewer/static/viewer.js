// medsight study view: slice scrolling, window/level, AI overlay toggle, accept / reject.
(function () {
  "use strict";
  const root = document.getElementById("study");
  if (!root) return;
  const uid = root.dataset.uid, job = root.dataset.job, hasMask = root.dataset.mask === "yes";
  const $ = (id) => document.getElementById(id);
  let series = [], overlayOn = true;

  function imageUrl() {
    const s = $("series").value || 0, k = $("slice").value;
    const q = new URLSearchParams({ center: $("center").value, width: $("width").value });
    return `/api/studies/${uid}/series/${s}/slices/${k}.png?${q}`;
  }
  function draw() {
    const k = Number($("slice").value), n = Number($("slice").max) + 1;
    $("slice-label").textContent = `${k + 1}/${n}`;
    $("image").src = imageUrl();
    const mask = $("mask");
    if (hasMask && job) {
      mask.dataset.series = $("series").value || 0;
      mask.src = `/api/jobs/${job}/masks/${k}.png?series=${mask.dataset.series}`;
    }
    mask.hidden = !(hasMask && overlayOn && mask.dataset.missing !== mask.dataset.series);
    $("heatmaps").hidden = !overlayOn;
  }
  function selectSeries() {
    const s = series[Number($("series").value) || 0];
    if (!s) return;
    $("slice").max = s.slices - 1;
    $("slice").value = Math.floor(s.slices / 2);
    $("center").value = Math.round(s.center);
    $("width").value = Math.round(s.width);
    draw();
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
    selectSeries();
    root.dataset.ready = "yes";
  });
})();
