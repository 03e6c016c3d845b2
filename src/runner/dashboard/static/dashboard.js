// The dashboard's only script (served from the package: no CDN, no build step). The pages work without it;
// it adds live updates over server-sent events, confirmation of actions, and "tick every row".
"use strict";

function liveRegions() {
  for (const region of document.querySelectorAll("[data-live-src]")) {
    const badge = document.querySelector("[data-live-state]");
    const source = new EventSource(region.dataset.liveSrc);
    const setState = (text, cls) => {
      if (badge) { badge.textContent = text; badge.className = "live " + cls; }
    };
    source.addEventListener(region.dataset.liveEvent || "message", (event) => {
      // the server renders the fragment (autoescaped), as it rendered the page
      region.innerHTML = event.data;
      setState("live", "on");
    });
    source.addEventListener("open", () => setState("live", "on"));
    source.addEventListener("error", () => setState("reconnecting…", "off"));
    // leaving the page closes the stream at once, so the server stops reading Redis for nobody
    window.addEventListener("pagehide", () => source.close());
  }
}

function confirmations() {
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const button = event.submitter;
    const question = (button && button.dataset.confirm) || form.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
}

function tickAll() {
  for (const box of document.querySelectorAll("[data-check-all]")) {
    box.addEventListener("change", () => {
      for (const row of box.form.querySelectorAll("input[type=checkbox][name=job_id]")) {
        row.checked = box.checked;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  liveRegions();
  confirmations();
  tickAll();
});
