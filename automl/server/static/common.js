// Helpers shared by the web view's pages. Everything shown is set as text, never parsed as HTML.
"use strict";

window.automl = (function () {
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const numbers = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 6 });

  /** An element with attributes (a "text" attribute sets its text) and children. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, String(value));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function number(value) {
    return value === null || value === undefined ? "—" : numbers.format(value);
  }

  function time(text) {
    if (!text) return "—";
    const at = new Date(text);
    return at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  function state(job) {
    const shown = job.cancel_requested && !FINAL.has(job.state) ? "cancelling" : job.state;
    return el("span", { class: "state state-" + shown, "data-state": job.state, text: shown });
  }

  function progress(job) {
    const total = Math.max(job.trials_total || 0, 1);
    return el(
      "span",
      { class: "progress" },
      el("progress", { max: total, value: Math.min(job.trials_finished || 0, total) }),
      el("span", { class: "count", text: (job.trials_finished || 0) + "/" + (job.trials_total || 0) }),
    );
  }

  /** fetch() on this server with the login cookie; a 401 sends the browser to the login page. */
  async function api(path, options) {
    const answer = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" }, ...options });
    if (answer.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      throw new Error("logged out");
    }
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(body.error || answer.status + " " + answer.statusText);
    return body;
  }

  return { FINAL, el, number, time, state, progress, api };
})();
