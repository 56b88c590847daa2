// medsight upload page: drag-and-drop or pick DICOM files, folders or zips; each file is sent
// to POST /api/studies on its own (progress per file from XMLHttpRequest upload events, and in
// total); the studies are queued for analysis once all their files are in.  Cancel aborts the
// requests in flight (the server keeps nothing of an unfinished request) and sends no more; what
// had been uploaded before stays, is listed, and is not queued for analysis.  While files are
// still being sent, leaving or reloading the page asks first (beforeunload): a reload would stop
// the upload half-way.  A file stored with some of its content skipped (a zip with damaged or
// non-DICOM members) is shown as a warning, not as a plain success.
(function () {
  "use strict";
  const root = document.getElementById("upload");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const maxBytes = Number(root.dataset.maxBytes);
  const PARALLEL = 3;
  let queue = [], active = 0, total = 0, failed = 0, batch = 0, stopped = false;
  const studies = new Map(); // study uid -> list item

  function size(n) {
    if (n < 1024) return `${n} bytes`;
    return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
  }
  function busy() { // files not yet sent or in flight (their upload would stop with the page)
    return queue.some((t) => !t.done);
  }
  function updateTotal() {
    const loaded = queue.reduce((a, t) => a + t.loaded, 0);
    const pct = total ? Math.round((100 * loaded) / total) : 0;
    $("total").value = pct;
    $("total-label").textContent = `${pct}%`;
    const done = queue.filter((t) => t.done).length;
    const finished = queue.length > 0 && done === queue.length;
    $("cancel").disabled = finished || !queue.length;
    if (stopped) {
      const kept = queue.filter((t) => t.state === "ok" || t.state === "partial");
      const bytes = kept.reduce((a, t) => a + t.file.size, 0);
      $("summary").textContent = `cancelled: ${kept.length} of ${queue.length} files uploaded ` +
        `(${size(bytes)} of ${size(total)})` + (failed ? `, ${failed} failed` : "") +
        "; the server kept nothing of the others";
    } else {
      const partial = queue.filter((t) => t.state === "partial").length;
      $("summary").textContent = `${done}/${queue.length} files done` +
        (failed ? `, ${failed} failed` : "") + (partial ? `, ${partial} with skipped content` : "");
      $("summary").className = failed || partial ? "warning" : "";
    }
    if (!finished) return;
    if (stopped) {
      root.dataset.cancelled = String(batch);
      studies.forEach((s) => { // the studies this batch added files to
        if (s.batch === batch) s.state.textContent = "upload cancelled: not queued for analysis";
      });
    } else {
      root.dataset.finished = String(batch);
      analyseAll();
    }
  }
  function row(task) {
    const tr = document.createElement("tr");
    const cells = [task.name, size(task.file.size), "", ""].map((text) => {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
      return td;
    });
    task.bar = document.createElement("progress");
    task.bar.max = 100;
    task.bar.value = 0;
    cells[2].appendChild(task.bar);
    task.result = cells[3];
    task.row = tr;
    $("files").querySelector("tbody").appendChild(tr);
  }
  // state: "ok", "partial" (stored, some of it skipped), "failed" or "cancelled" (a cancelled
  // file counts as not uploaded at all)
  function finish(task, state, text) {
    task.done = true;
    task.state = state;
    task.xhr = null;
    task.loaded = state === "cancelled" ? 0 : task.file.size;
    if (state === "ok" || state === "partial") task.bar.value = 100;
    task.row.className = state;
    task.result.textContent = text;
    if (state === "failed") failed += 1;
    if (task.started) active -= 1;
    updateTotal();
    next();
  }
  function cancelAll() {
    if (stopped) return;
    stopped = true;
    for (const task of queue) {
      if (task.done) continue;
      if (task.xhr) task.xhr.abort(); // its abort event finishes the task
      else finish(task, "cancelled", "cancelled: not sent");
    }
  }
  function addStudy(uid) {
    const known = studies.get(uid);
    if (known) {
      known.batch = batch;
      return;
    }
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `/ui/studies/${uid}`;
    a.textContent = uid;
    a.className = "study-link";
    li.appendChild(a);
    li.appendChild(document.createTextNode(" "));
    const state = document.createElement("span");
    state.className = "study-state";
    li.appendChild(state);
    $("studies").appendChild(li);
    studies.set(uid, { li, state, queued: false, batch });
  }
  function message(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (typeof body.detail === "string") return body.detail;
      return JSON.stringify(body.detail);
    } catch (e) {
      return xhr.statusText || `HTTP ${xhr.status}`;
    }
  }
  function send(task) {
    active += 1;
    if (task.file.size > maxBytes) {
      finish(task, "failed", `too big: ${size(task.file.size)}, the limit is ${size(maxBytes)}`);
      return;
    }
    const form = new FormData();
    form.append("files", task.file, task.name);
    const xhr = new XMLHttpRequest();
    task.xhr = xhr;
    xhr.open("POST", "/api/studies?analyse=false");
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      task.loaded = task.file.size * (e.loaded / e.total);
      task.bar.value = Math.round((100 * e.loaded) / e.total);
      updateTotal();
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) {
        const body = JSON.parse(xhr.responseText);
        body.studies.forEach(addStudy);
        let text = `stored ${body.stored}`;
        if (body.skipped.length) {
          text = `warning: stored ${body.stored}, skipped ${body.skipped.length}: ` +
            body.skipped.join("; ");
        }
        finish(task, body.skipped.length ? "partial" : "ok", text);
      } else if (xhr.status === 413) {
        finish(task, "failed", `too big: ${message(xhr)}`);
      } else if (xhr.status === 401) {
        finish(task, "failed", "not logged in (log in again)");
      } else {
        finish(task, "failed", message(xhr));
      }
    });
    xhr.addEventListener("error", () => finish(task, "failed", "network error"));
    xhr.addEventListener("abort", () => {
      const pct = task.bar.value;
      finish(task, "cancelled", `cancelled at ${pct}% sent: the server keeps nothing of it`);
    });
    xhr.send(form);
  }
  function next() {
    while (!stopped && active < PARALLEL) {
      const task = queue.find((t) => !t.started);
      if (!task) return;
      task.started = true;
      send(task);
    }
  }
  async function analyseAll() {
    if (!$("analyse").checked) return;
    for (const [uid, s] of studies) {
      if (s.queued) continue;
      s.queued = true;
      s.state.textContent = "queueing analysis...";
      const resp = await fetch(`/api/studies/${uid}/jobs`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ study_uid: uid }),
      });
      const body = await resp.json().catch(() => ({}));
      s.state.textContent = resp.ok ? `analysis ${body.state}` : `not queued: ${body.detail || resp.status}`;
    }
  }
  function add(files) {
    if (!files.length) return;
    if (queue.length && queue.every((t) => t.done)) { // a new batch after a finished one
      queue = []; total = 0; failed = 0; stopped = false;
      $("files").querySelector("tbody").textContent = "";
    }
    batch += 1;
    files.forEach(({ file, name }) => {
      const task = { file, name, loaded: 0, done: false, started: false, state: "", xhr: null };
      total += file.size;
      queue.push(task);
      row(task);
    });
    studies.forEach((s) => { s.queued = false; });
    updateTotal();
    next();
  }
  // folders dropped: walk their entries (webkitGetAsEntry) to the files inside
  function walk(entry, path) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((file) => resolve([{ file, name: path + file.name }]), () => resolve([]));
      } else if (entry.isDirectory) {
        const reader = entry.createReader(), all = [];
        const more = () => reader.readEntries(async (entries) => {
          if (!entries.length) {
            const nested = await Promise.all(all.map((e) => walk(e, `${path}${entry.name}/`)));
            resolve(nested.flat());
          } else {
            all.push(...entries);
            more();
          }
        }, () => resolve([]));
        more();
      } else resolve([]);
    });
  }
  $("cancel").addEventListener("click", cancelAll);
  window.addEventListener("beforeunload", (e) => {
    if (!busy()) return;
    e.preventDefault(); // the browser asks "leave the page?" (its own words, not ours)
    e.returnValue = "";
  });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const items = Array.from(e.dataTransfer.items || []);
    const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
    if (entries.length && entries.every((x) => x)) {
      add((await Promise.all(entries.map((x) => walk(x, "")))).flat());
    } else {
      add(Array.from(e.dataTransfer.files).map((file) => ({ file, name: file.name })));
    }
  });
  ["picker", "folder"].forEach((id) => $(id).addEventListener("change", (e) => {
    add(Array.from(e.target.files).map((file) => ({ file, name: file.webkitRelativePath || file.name })));
    e.target.value = "";
  }));
})();
