/* Plan supervision dashboard: draws the charts from the dashboard JSON with Chart.js (pinned in package.json).
   Without Chart.js or JavaScript the page still shows every figure in its tables. */
(function () {
  "use strict";

  var COLOURS = { done: "#607d8b", green: "#2e7d32", yellow: "#f9a825", red: "#c62828" };

  function draw(box, data) {
    var Chart = window.Chart;
    var label = function (key) { return box.getAttribute("data-label-" + key); };
    var zh = box.getAttribute("data-locale") === "zh_CN";
    new Chart(document.getElementById("chart-areas"), {
      type: "bar",
      data: {
        labels: data.areas.map(function (a) { return a.numeral + " " + (zh ? a.title.zh : a.title.en); }),
        datasets: ["done", "green", "yellow", "red"].map(function (key) {
          return { label: label(key), backgroundColor: COLOURS[key],
                   data: data.areas.map(function (a) { return a.lights[key]; }) };
        })
      },
      options: { animation: false, responsive: true, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }
    });
    new Chart(document.getElementById("chart-trend"), {
      type: "line",
      data: {
        labels: data.trend.map(function (p) { return p.month; }),
        datasets: [{ label: label("rate"), borderColor: COLOURS.done, backgroundColor: COLOURS.done,
                     data: data.trend.map(function (p) { return p.completion_rate === null ? null : Math.round(p.completion_rate * 1000) / 10; }) }]
      },
      options: { animation: false, responsive: true, scales: { y: { min: 0, max: 100 } } }
    });
    box.setAttribute("data-drawn", "true");
  }

  function start() {
    var box = document.getElementById("plan-charts");
    var source = document.getElementById("dashboard-json");
    if (!box || !source || !window.Chart || !window.fetch) { return; }
    fetch(source.getAttribute("href"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (data) { draw(box, data); })
      .catch(function () { box.setAttribute("data-drawn", "failed"); });
  }

  if (document.readyState !== "loading") { start(); } else { document.addEventListener("DOMContentLoaded", start); }
}());
