// A job's page: drawn from its status at load, then kept live by its server-sent event stream.
"use strict";

(function () {
  const { el, number, time, state, api, FINAL } = window.automl;
  const byId = (id) => document.getElementById(id);
  const root = byId("job");
  const jobId = root.dataset.jobId;
  const mlflowUi = root.dataset.mlflowUi;
  const metrics = JSON.parse(byId("metric-names").textContent);
  const initial = JSON.parse(byId("initial-status").textContent);
  const points = []; // what the page has seen: {at (ms), finished, best}
  let current = initial.job;

  function drawJob(job) {
    current = job;
    const final = FINAL.has(job.state);
    byId("state").replaceChildren(state(job));
    byId("submitted").textContent = time(job.created_at);
    const bar = byId("progress");
    bar.max = Math.max(job.trials_total, 1);
    bar.value = Math.min(job.trials_finished, bar.max);
    byId("progress-text").textContent = job.trials_finished + "/" + job.trials_total;
    byId("best").textContent = number(job.best_value);
    byId("job-error").hidden = !job.error;
    byId("job-error").textContent = job.error || "";
    byId("cancel").hidden = final || job.cancel_requested;
    byId("cancel-note").textContent = job.cancel_requested && !final ? "Cancel requested: its trials stop within seconds." : "";
    const link = byId("mlflow-link");
    if (mlflowUi && job.experiment_id && job.mlflow_run_id) {
      link.href = mlflowUi + "/#/experiments/" + encodeURIComponent(job.experiment_id) + "/runs/" + encodeURIComponent(job.mlflow_run_id);
      link.hidden = false;
    }
    if (job.snapshot) drawTop(job.snapshot);
  }

  function drawTop(snapshot) {
    const table = byId("top");
    const trials = (snapshot.top || []).slice(0, 10);
    table.tHead.replaceChildren(
      el("tr", {}, el("th", { text: "Trial" }), ...metrics.map((m) => el("th", { class: "num", text: m })), el("th", { text: "Hyperparameters" })),
    );
    if (!trials.length) {
      table.tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: metrics.length + 2, class: "muted", text: "No trial has completed yet." })));
      return;
    }
    const params = (t) => Object.entries(t.params || {}).map(([k, v]) => k + "=" + (typeof v === "number" ? number(v) : v)).join(", ");
    table.tBodies[0].replaceChildren(
      ...trials.map((t) => {
        const values = t.values && t.values.length ? t.values : [t.value];
        return el(
          "tr",
          {},
          el("td", { text: "#" + t.number }),
          ...metrics.map((_, i) => el("td", { class: "num", text: number(values[i]) })),
          el("td", { class: "params", text: params(t) }),
        );
      }),
    );
  }

  function drawEvents(events) {
    byId("events").replaceChildren(
      ...events
        .slice()
        .reverse()
        .map((e) => el("li", {}, el("time", { text: time(e.at) }), el("span", { class: "kind", text: e.kind }), el("span", { text: e.message }))),
    );
  }

  // -- the chart: finished trials (left axis) and the best value (right axis) over time, as steps --

  const SVG = "http://www.w3.org/2000/svg";
  const W = 720, H = 240, LEFT = 48, RIGHT = 64, TOP = 12, BOTTOM = 28;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function record(job) {
    const last = points[points.length - 1];
    if (last && last.finished === job.trials_finished && last.best === job.best_value) return;
    points.push({ at: Date.now(), finished: job.trials_finished, best: job.best_value });
    drawChart();
  }

  function steps(series, x, y, end) {
    let path = "";
    for (const [i, p] of series.entries()) path += (i ? " H" + x(p.at).toFixed(1) + " V" : "M" + x(p.at).toFixed(1) + " ") + y(p.value).toFixed(1);
    return series.length ? path + " H" + x(end).toFixed(1) : "";
  }

  function drawChart() {
    const chart = byId("chart");
    chart.dataset.points = String(points.length);
    if (!points.length) return;
    const final = FINAL.has(current.state);
    const lastAt = points[points.length - 1].at;
    const end = final ? lastAt : Math.max(Date.now(), lastAt);
    const start = points[0].at;
    const span = Math.max(end - start, 1000);
    const x = (at) => LEFT + ((at - start) / span) * (W - LEFT - RIGHT);
    const total = Math.max(current.trials_total, 1);
    const yFinished = (n) => H - BOTTOM - (n / total) * (H - TOP - BOTTOM);
    const bests = points.filter((p) => p.best !== null && p.best !== undefined);
    let lo = Math.min(...bests.map((p) => p.best)), hi = Math.max(...bests.map((p) => p.best));
    if (lo === hi) [lo, hi] = [lo - (Math.abs(lo) * 0.1 || 1), hi + (Math.abs(hi) * 0.1 || 1)];
    const yBest = (v) => H - BOTTOM - ((v - lo) / (hi - lo)) * (H - TOP - BOTTOM);
    const seconds = span / 1000;
    const spanText = seconds < 120 ? Math.round(seconds) + " s" : seconds < 7200 ? Math.round(seconds / 60) + " min" : (seconds / 3600).toFixed(1) + " h";
    const parts = [
      svg("line", { class: "axis", x1: LEFT, y1: H - BOTTOM, x2: W - RIGHT, y2: H - BOTTOM }),
      svg("line", { class: "axis", x1: LEFT, y1: TOP, x2: LEFT, y2: H - BOTTOM }),
      svg("text", { class: "tick finished", x: LEFT - 6, y: yFinished(0), "text-anchor": "end", "dominant-baseline": "middle" }, "0"),
      svg("text", { class: "tick finished", x: LEFT - 6, y: yFinished(total), "text-anchor": "end", "dominant-baseline": "middle" }, String(total)),
      svg("text", { class: "tick", x: LEFT, y: H - 8 }, time(new Date(start).toISOString())),
      svg("text", { class: "tick", x: W - RIGHT, y: H - 8, "text-anchor": "end" }, "+" + spanText),
      svg("path", { class: "line finished", d: steps(points.map((p) => ({ at: p.at, value: p.finished })), x, yFinished, end) }),
    ];
    if (bests.length) {
      parts.push(
        svg("line", { class: "axis", x1: W - RIGHT, y1: TOP, x2: W - RIGHT, y2: H - BOTTOM }),
        svg("text", { class: "tick best", x: W - RIGHT + 6, y: yBest(hi), "dominant-baseline": "middle" }, number(hi)),
        svg("text", { class: "tick best", x: W - RIGHT + 6, y: yBest(lo), "dominant-baseline": "middle" }, number(lo)),
        svg("path", { class: "line best", d: steps(bests.map((p) => ({ at: p.at, value: p.best })), x, yBest, end) }),
      );
    }
    chart.replaceChildren(...parts);
  }

  // -- live: the job's stream; Cancel --

  function follow() {
    const connection = byId("connection");
    const source = new EventSource("/api/v1/jobs/" + encodeURIComponent(jobId) + "/stream");
    source.addEventListener("open", () => (connection.textContent = "live"));
    source.addEventListener("job", (message) => {
      const job = JSON.parse(message.data);
      drawJob(job);
      record(job);
    });
    source.addEventListener("events", (message) => drawEvents(JSON.parse(message.data)));
    source.addEventListener("end", () => {
      source.close();
      connection.textContent = "";
      drawChart();
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        connection.textContent = "disconnected: reload the page";
        api("/api/v1/whoami").catch(() => {}); // logged out: to the login page
      } else {
        connection.textContent = "reconnecting…";
      }
    });
    const ticking = window.setInterval(() => (FINAL.has(current.state) ? window.clearInterval(ticking) : drawChart()), 1000);
  }

  byId("cancel").addEventListener("click", async () => {
    if (!window.confirm("Cancel job " + jobId + "? Its running trials stop within seconds.")) return;
    const button = byId("cancel");
    button.disabled = true;
    try {
      drawJob(await api("/api/v1/jobs/" + encodeURIComponent(jobId) + "/cancel", { method: "POST" }));
    } catch (error) {
      byId("cancel-note").textContent = "Could not cancel: " + error.message;
    } finally {
      button.disabled = false;
    }
  });

  // The first point: the job's start, when this is its first attempt (else only what the page sees).
  if (current.started_at && current.attempts <= 1) points.push({ at: Date.parse(current.started_at), finished: 0, best: null });
  drawJob(current);
  if (!current.snapshot) drawTop(initial.snapshot || {});
  drawEvents(initial.events);
  points.push({ at: FINAL.has(current.state) && current.finished_at ? Date.parse(current.finished_at) : Date.now(), finished: current.trials_finished, best: current.best_value });
  drawChart();
  if (!FINAL.has(current.state)) follow();
})();
