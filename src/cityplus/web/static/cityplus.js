/* CityPlus portal: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  function say(message) {
    var status = document.getElementById("js-status");
    if (!status) { return; }
    status.hidden = false;
    status.textContent = message;
    window.setTimeout(function () { status.hidden = true; status.textContent = ""; }, 6000);
  }

  ready(function () {
    // Move focus to a form's error summary so that screen readers announce it first.
    var summary = document.querySelector(".error-summary");
    if (summary) { summary.focus(); }

    // Copy buttons (the one-time token secret): shown only when the clipboard API is available.
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(source.value).then(function () {
          say(button.getAttribute("data-copied"));
        });
      });
    });
    document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
  });

  // htmx leaves the page unchanged when a request fails; tell the user instead of failing silently.
  document.addEventListener("htmx:responseError", function () {
    var status = document.getElementById("js-status");
    if (status) { say(status.getAttribute("data-error")); }
  });
  document.addEventListener("htmx:sendError", function () {
    var status = document.getElementById("js-status");
    if (status) { say(status.getAttribute("data-error")); }
  });
})();
