// The console's own script: live updates from the event stream. No framework, no
// third-party code; the Content-Security-Policy allows nothing else to run.
//
// - An element with data-live="URL" is re-fetched (an HTML fragment rendered by the
//   service) whenever an event arrives, at most every 400 ms; with data-live-job="ID",
//   only when the event is about that job.
// - A list with data-live-events gets one item per event as it arrives.
// - #live-state says whether the stream is connected.
"use strict";

(function () {
  const REFRESH_MS = 400;
  let timer = null;
  let pending = false;
  const dirty = new Set();

  function setState(text, ok) {
    const el = document.getElementById("live-state");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("on", ok);
  }

  async function refreshOne(el) {
    const url = el.getAttribute("data-live");
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      cache: "no-store",
    });
    if (response.redirected && response.url.indexOf("/console/signin") !== -1) {
      window.location.assign(response.url); // the session ended
      return;
    }
    if (!response.ok) return;
    const html = await response.text();
    const template = document.createElement("template");
    template.innerHTML = html;
    el.replaceChildren(template.content);
    el.dispatchEvent(new CustomEvent("console:refreshed", { bubbles: true }));
  }

  function refreshAll() {
    timer = null;
    const targets = Array.from(dirty);
    dirty.clear();
    targets.forEach(function (el) {
      refreshOne(el).catch(function () {});
    });
    if (pending) {
      pending = false;
      schedule();
    }
  }

  function markDirty(jobId) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      const only = el.getAttribute("data-live-job");
      if (!only || !jobId || only === jobId) dirty.add(el);
    });
  }

  function schedule() {
    if (dirty.size === 0) return;
    if (timer !== null) {
      pending = true;
      return;
    }
    timer = window.setTimeout(refreshAll, REFRESH_MS);
  }

  function appendEvent(data) {
    document.querySelectorAll("[data-live-events]").forEach(function (list) {
      const item = document.createElement("li");
      const id = document.createElement("code");
      id.textContent = data.id;
      const type = document.createElement("strong");
      type.textContent = " " + data.type + " ";
      const job = document.createElement("a");
      job.href = "/console/jobs/" + encodeURIComponent(data.job_id);
      job.textContent = data.job_id;
      item.append(id, type, job);
      list.prepend(item);
      const limit = parseInt(list.getAttribute("data-live-events") || "100", 10);
      while (list.children.length > limit) list.lastElementChild.remove();
    });
  }

  function connect() {
    const url = document.body.getAttribute("data-stream");
    if (!url || !document.getElementById("live-state") || !window.EventSource) return;
    const source = new EventSource(url);
    source.onopen = function () {
      setState("live", true);
      // Catch up on whatever happened between rendering the page and connecting.
      markDirty(null);
      schedule();
    };
    source.onerror = function () {
      setState("reconnecting", false);
    };
    source.onmessage = function (message) {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      document.dispatchEvent(new CustomEvent("console:event", { detail: data }));
      appendEvent(data);
      markDirty(data.job_id);
      schedule();
    };
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }

  document.addEventListener("DOMContentLoaded", connect);
})();
