// warnd console behaviour. Loaded from this origin only (CSP script-src 'self'); no inline script.
"use strict";

// The header clock in Beijing time, whatever time zone the screen's computer is set to.
function beijingText(d) {
  const t = new Date(d.getTime() + 8 * 3600 * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${t.getUTCFullYear()}-${p(t.getUTCMonth() + 1)}-${p(t.getUTCDate())} ` +
         `${p(t.getUTCHours())}:${p(t.getUTCMinutes())}:${p(t.getUTCSeconds())}`;
}

function startClock() {
  const els = document.querySelectorAll("[data-clock]");
  if (!els.length) return;
  const tick = () => { const s = beijingText(new Date()); els.forEach((el) => { el.textContent = s; }); };
  tick();
  setInterval(tick, 1000);
}

// fetch() with the session's CSRF token, for pages that change things from script.
window.warnd = {
  csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  },
  post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrf() },
      body: JSON.stringify(body || {}),
    });
  },
};

document.addEventListener("DOMContentLoaded", startClock);
