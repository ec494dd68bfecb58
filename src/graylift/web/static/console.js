// graylift console: the few things htmx does not do by itself. No inline script anywhere (the CSP forbids it).
(function () {
  "use strict";
  var MAX_LINES = 1000;

  // The live log: drop lines already shown (a reconnect may resend them), keep the last MAX_LINES, and follow
  // the end while the reader is at the end.
  function tidyLog(log) {
    var seen = {};
    var lines = log.querySelectorAll(".line");
    for (var i = 0; i < lines.length; i++) {
      if (seen[lines[i].id]) { lines[i].remove(); } else { seen[lines[i].id] = true; }
    }
    lines = log.querySelectorAll(".line");
    for (var j = 0; j < lines.length - MAX_LINES; j++) { lines[j].remove(); }
  }

  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    var log = document.getElementById("log");
    if (log && evt.detail && evt.detail.type === "log") {
      log.dataset.atEnd = (log.scrollHeight - log.scrollTop - log.clientHeight < 40) ? "1" : "";
    }
  });

  document.addEventListener("htmx:sseMessage", function (evt) {
    var log = document.getElementById("log");
    if (!log || !evt.detail || evt.detail.type !== "log") { return; }
    tidyLog(log);
    if (log.dataset.atEnd) { log.scrollTop = log.scrollHeight; }
  });

  // Confirmation dialogs: Cancel (or Escape) closes them.
  document.addEventListener("click", function (evt) {
    if (evt.target && evt.target.closest && evt.target.closest("[data-close]")) {
      document.getElementById("dialog").innerHTML = "";
    }
  });
  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Escape") { document.getElementById("dialog").innerHTML = ""; }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var log = document.getElementById("log");
    if (log) { tidyLog(log); log.scrollTop = log.scrollHeight; }
  });
})();
