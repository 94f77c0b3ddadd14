// warnd console: live pages by server-sent events (the 叫应 board, the alarm bar), countdowns
// to confirm deadlines, and the audible alarm. Same origin only (CSP); no inline script.
"use strict";

(function () {
  let skew = 0; // server clock − this screen's clock, in ms (the server's clock is the truth)

  function setServerNow(iso) {
    const t = Date.parse(iso || "");
    if (!Number.isNaN(t)) skew = t - Date.now();
  }

  // --- countdowns ---------------------------------------------------------------------------
  function mmss(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const p = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${p(m)}:${p(r)}` : `${m}:${p(r)}`;
  }

  function tickCountdowns() {
    const now = Date.now() + skew;
    document.querySelectorAll(".countdown[data-deadline]").forEach((el) => {
      const left = Date.parse(el.dataset.deadline) - now;
      if (Number.isNaN(left)) return;
      el.textContent = left > 0 ? `剩 ${mmss(left)}` : `超时 ${mmss(left)}`;
      el.classList.toggle("late", left <= 0);
      const row = el.closest("tr.call");
      if (row && row.dataset.state === "open") row.classList.toggle("overdue", left <= 0);
    });
  }

  // --- the board ------------------------------------------------------------------------------
  function replaceKeeping(container, html) {
    // Keep what the officer is typing and which forms are open across a refresh.
    const notes = {}, open = new Set();
    let focused = null;
    container.querySelectorAll("textarea[data-call]").forEach((t) => { if (t.value) notes[t.dataset.call] = t.value; });
    container.querySelectorAll("details.ack[open]").forEach((d) => open.add(d.dataset.call));
    if (document.activeElement && document.activeElement.matches("textarea[data-call]")) {
      focused = document.activeElement.dataset.call;
    }
    container.innerHTML = html;
    container.querySelectorAll("details.ack").forEach((d) => { if (open.has(d.dataset.call)) d.open = true; });
    container.querySelectorAll("textarea[data-call]").forEach((t) => {
      if (notes[t.dataset.call]) t.value = notes[t.dataset.call];
      if (focused === t.dataset.call) t.focus();
    });
  }

  function startBoard(es, board) {
    const body = board.querySelector(".board-body");
    if (body) setServerNow(body.dataset.now);
    let updates = 0;
    es.addEventListener("open", () => { board.dataset.live = "on"; });
    es.addEventListener("error", () => { board.dataset.live = "reconnecting"; });
    es.addEventListener("board", (e) => {
      replaceKeeping(board, e.data);
      const b = board.querySelector(".board-body");
      if (b) setServerNow(b.dataset.now);
      updates += 1;
      board.dataset.updates = String(updates);
      tickCountdowns();
    });
  }

  // --- alarms ---------------------------------------------------------------------------------
  let audio = null;
  let ringing = null;
  const SILENCED = "warnd.silenced";

  function silenced() {
    try { return new Set(JSON.parse(sessionStorage.getItem(SILENCED) || "[]")); } catch (e) { return new Set(); }
  }

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      [0, 0.35].forEach((at) => {
        const o = audio.createOscillator(), g = audio.createGain();
        o.type = "square"; o.frequency.value = 880;
        g.gain.value = 0.15;
        o.connect(g); g.connect(audio.destination);
        o.start(audio.currentTime + at); o.stop(audio.currentTime + at + 0.25);
      });
      document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
    } catch (e) { /* no audio device: the bar still shows */ }
  }

  function ring(on) {
    document.body.dataset.alarm = on ? "ringing" : (document.body.dataset.alarm ? "quiet" : "");
    if (on && !ringing) { beep(); ringing = setInterval(beep, 4000); }
    if (!on && ringing) { clearInterval(ringing); ringing = null; }
  }

  function showAlarms(bar, alarms) {
    const list = bar.querySelector(".alarm-items");
    list.textContent = "";
    alarms.forEach((a) => {
      const li = document.createElement("li");
      li.className = `alarm alarm-${a.level}`;
      li.dataset.key = a.key;
      li.dataset.kind = a.kind;
      if (a.link && a.link.startsWith("/") && !a.link.startsWith("//")) {
        const link = document.createElement("a");
        link.href = a.link; link.textContent = a.text;
        li.appendChild(link);
      } else {
        li.textContent = a.text;
      }
      list.appendChild(li);
    });
    bar.hidden = alarms.length === 0;
    bar.dataset.count = String(alarms.length);
    const quiet = silenced();
    ring(alarms.some((a) => a.level === "critical" && !quiet.has(a.key)));
  }

  function startAlarms(es, bar) {
    let current = [];
    bar.querySelector(".alarm-silence").addEventListener("click", () => {
      const quiet = silenced();
      current.forEach((a) => quiet.add(a.key));
      sessionStorage.setItem(SILENCED, JSON.stringify([...quiet]));
      ring(false);
    });
    bar.querySelector(".alarm-sound").addEventListener("click", () => { beep(); });
    es.addEventListener("alarms", (e) => {
      try { current = JSON.parse(e.data); } catch (err) { return; }
      showAlarms(bar, current);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    // One stream per page: the board's carries the alarms too.
    const board = document.getElementById("board");
    const bar = document.getElementById("alarm-bar");
    const url = (board && board.dataset.stream) || (bar && bar.dataset.stream);
    if (url && window.EventSource) {
      const es = new EventSource(url);
      if (board && board.dataset.stream) startBoard(es, board);
      if (bar) startAlarms(es, bar);
    }
    tickCountdowns();
    setInterval(tickCountdowns, 1000);
  });
})();
