// medsight study page, a stored study never analysed: the Analyse button queues it with the
// job API (POST /api/studies/{uid}/jobs, radiologist or admin), follows the job
// (GET /api/jobs/{id}) and reloads the page when it is done, so the findings appear.
(function () {
  "use strict";
  const button = document.getElementById("analyse-now");
  if (!button) return;
  const state = document.getElementById("analyse-state");
  const uid = button.dataset.uid;
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const detail = (body, resp) => (typeof body.detail === "string" ? body.detail : `HTTP ${resp.status}`);
  button.addEventListener("click", async () => {
    button.disabled = true;
    state.textContent = "queueing...";
    const resp = await fetch(`/api/studies/${uid}/jobs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ study_uid: uid }),
    });
    const job = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      state.textContent = `not queued: ${detail(job, resp)}`;
      button.disabled = false;
      return;
    }
    for (;;) {
      state.textContent = `analysis ${job.state}`;
      if (job.state === "done") {
        window.location.reload();
        return;
      }
      if (job.state === "failed") {
        state.textContent = `analysis failed: ${job.error || "see the job"}`;
        return;
      }
      await wait(1000);
      const r = await fetch(`/api/jobs/${job.id}`);
      if (!r.ok) {
        state.textContent = `cannot follow the analysis: HTTP ${r.status}`;
        return;
      }
      Object.assign(job, await r.json());
    }
  });
})();
