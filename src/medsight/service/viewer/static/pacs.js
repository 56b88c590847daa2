// medsight query/retrieve page: search the PACS (GET /api/pacs/studies), retrieve a study
// (POST /api/pacs/pull, which queues its analysis) and follow the job's state.  A DIMSE
// retrieve answers with a pull job (kind "pull": C-MOVE sub-operation counts) followed at
// /api/pacs/pulls/{id} until the C-STORE SCP has queued the study.  With both a DICOMweb and a
// DIMSE PACS configured the form's "source" picks one; the retrieve uses the search's source.
(function () {
  "use strict";
  const form = document.getElementById("query");
  if (!form) return;
  const $ = (id) => document.getElementById(id);

  async function detail(resp) {
    const body = await resp.json().catch(() => ({}));
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${d.loc.slice(-1)[0]}: ${d.msg}`).join("; ");
    return `HTTP ${resp.status}`;
  }
  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function link(td, uid) {
    td.textContent = "";
    const a = document.createElement("a");
    a.href = `/ui/studies/${uid}`;
    a.textContent = "open";
    a.className = "open";
    td.appendChild(a);
  }
  async function follow(jobId, state, uid) {
    for (;;) {
      const resp = await fetch(`/api/jobs/${jobId}`);
      if (!resp.ok) { state.textContent = await detail(resp); return; }
      const job = await resp.json();
      state.textContent = `analysis ${job.state}${job.error ? ": " + job.error : ""}`;
      if (job.state === "done" || job.state === "failed") return;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  function counts(p) {
    return `${p.completed} completed, ${p.failed} failed, ${p.warning} warning`;
  }
  // follow a DIMSE pull job; resolves to its final state
  async function followPull(pull, state) {
    for (;;) {
      state.textContent = `C-MOVE ${pull.state}: ${counts(pull)}`;
      if (pull.state === "done" || pull.state === "failed") return pull;
      await new Promise((r) => setTimeout(r, 500));
      const resp = await fetch(`/api/pacs/pulls/${pull.id}`);
      if (!resp.ok) return { state: "failed", error: await detail(resp), completed: 0, failed: 0, warning: 0 };
      pull = await resp.json();
    }
  }
  async function retrieve(row, button, state, here, source) {
    button.disabled = true;
    state.textContent = "retrieving...";
    const query = source ? `?source=${encodeURIComponent(source)}` : "";
    const resp = await fetch(`/api/pacs/pull${query}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ study_uid: row.study_uid }),
    });
    if (!resp.ok) {
      state.textContent = `retrieve failed: ${await detail(resp)}`;
      button.disabled = false;
      return;
    }
    let job = await resp.json();
    if (job.kind === "pull") {
      const pull = await followPull(job, state);
      if (pull.state === "failed") {
        state.textContent = `retrieve failed: ${pull.error}`;
        button.disabled = false;
        return;
      }
      link(here, row.study_uid);
      if (!pull.job) { state.textContent = pull.message; return; }
      job = pull.job;
    }
    link(here, row.study_uid);
    follow(job.id, state, row.study_uid);
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const params = new URLSearchParams();
    new FormData(form).forEach((v, k) => { if (String(v).trim()) params.set(k, String(v).trim()); });
    $("query-status").textContent = "searching...";
    const body = $("pacs-studies").querySelector("tbody");
    body.textContent = "";
    const source = params.get("source") || "";
    const resp = await fetch(`/api/pacs/studies?${params}`);
    if (!resp.ok) { $("query-status").textContent = await detail(resp); return; }
    const rows = await resp.json();
    $("query-status").textContent = `${rows.length} stud${rows.length === 1 ? "y" : "ies"} found`;
    rows.forEach((row) => {
      const tr = document.createElement("tr");
      tr.dataset.uid = row.study_uid;
      cell(tr, row.patient_id);
      cell(tr, row.patient_name);
      cell(tr, row.date);
      cell(tr, row.modalities.join(", "));
      cell(tr, row.description);
      cell(tr, `${row.series} / ${row.instances}`);
      const here = cell(tr, row.local ? "" : "no");
      if (row.local) link(here, row.study_uid);
      const action = cell(tr, "");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "retrieve";
      button.textContent = row.local ? "Retrieve again" : "Retrieve";
      const state = document.createElement("span");
      state.className = "job-state";
      if (row.job) state.textContent = ` analysis ${row.job.state}`;
      button.addEventListener("click", () => retrieve(row, button, state, here, source));
      action.appendChild(button);
      action.appendChild(state);
      body.appendChild(tr);
    });
    form.dataset.searched = String(Number(form.dataset.searched || 0) + 1);
  });
})();
