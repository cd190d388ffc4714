// The job list: drawn from the API's /api/v1/jobs, asked again every few seconds.
"use strict";

(function () {
  const { el, number, time, state, progress, api } = window.automl;
  const table = document.getElementById("jobs");
  const rows = table.querySelector("tbody");
  const note = document.getElementById("refresh-status");
  const every = Number(table.dataset.refreshMs) || 3000;
  const limit = Number(table.dataset.limit) || 100;

  function row(job) {
    return el(
      "tr",
      { "data-job-id": job.id, "data-state": job.state },
      el("td", {}, el("a", { href: "/jobs/" + job.id, class: "id", text: job.id })),
      el("td", { text: job.name }),
      el("td", {}, state(job)),
      el("td", { text: job.owner || "—" }),
      el("td", {}, progress(job)),
      el("td", { class: "num", text: number(job.best_value) }),
      el("td", { text: time(job.created_at) }),
    );
  }

  function draw(jobs) {
    if (!jobs.length) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No jobs yet: automl submit JOB.yaml queues one." })));
      return;
    }
    rows.replaceChildren(...jobs.map(row));
  }

  async function refresh() {
    try {
      draw(await api("/api/v1/jobs?limit=" + limit));
      note.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      note.classList.remove("error");
    } catch (error) {
      note.textContent = "Could not refresh (" + error.message + "); trying again.";
      note.classList.add("error");
    } finally {
      window.setTimeout(refresh, every);
    }
  }

  draw(JSON.parse(document.getElementById("initial-jobs").textContent));
  window.setTimeout(refresh, every);
})();
