/* Station charts on /environment/air/stations/{id}: AQI (bars) and concentrations (lines) of the last 24 hours
   and 30 days, from the page's JSON endpoint. Progressive enhancement: without JavaScript or Chart.js the page
   shows the same figures as tables. Labels come from the page (data-label-*), so they are translated there. */
(function () {
  "use strict";

  var LEVEL_COLOURS = {  // HJ 633 Appendix A
    excellent: "rgb(0, 228, 0)", good: "rgb(255, 255, 0)", lightlyPolluted: "rgb(255, 126, 0)",
    moderatelyPolluted: "rgb(255, 0, 0)", heavilyPolluted: "rgb(153, 0, 76)", severelyPolluted: "rgb(126, 0, 35)"
  };
  var LINES = [["pm25", "#1f77b4"], ["pm10", "#8c564b"], ["o3_8h", "#9467bd"], ["no2", "#2ca02c"]];

  function chart(canvas, labels, rows, box) {
    var datasets = [{
      type: "bar", label: box.dataset.labelAqi, yAxisID: "aqi", order: 2,
      data: rows.map(function (r) { return r.aqi; }),
      backgroundColor: rows.map(function (r) { return LEVEL_COLOURS[r.category_key] || "#cccccc"; }),
      borderColor: "#333333", borderWidth: 1
    }];
    LINES.forEach(function (line) {
      datasets.push({
        type: "line", label: box.dataset["label" + line[0].charAt(0).toUpperCase() + line[0].slice(1)],
        yAxisID: "conc", order: 1, borderColor: line[1], backgroundColor: line[1], pointRadius: 2, spanGaps: false,
        data: rows.map(function (r) { var v = r.concentrations[line[0]]; return v === undefined ? null : v; })
      });
    });
    return new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          aqi: { type: "linear", position: "left", beginAtZero: true, title: { display: true, text: box.dataset.labelAqi } },
          conc: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                  title: { display: true, text: box.dataset.labelUnit } }
        }
      }
    });
  }

  function draw(box) {
    if (!window.Chart || !window.fetch) { return; }
    var lang = box.dataset.locale || undefined;
    fetch(box.dataset.stationHistory, { headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (body) {
        var hourLabels = body.hourly.map(function (h) {
          return new Date(h.hour).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", timeZone: "Asia/Shanghai" });
        });
        var dayLabels = body.daily.map(function (d) { return d.date.slice(5); });
        box.querySelectorAll("figure").forEach(function (f) { f.hidden = false; });
        chart(document.getElementById("chart-hourly"), hourLabels, body.hourly, box);
        chart(document.getElementById("chart-daily"), dayLabels, body.daily, box);
        box.setAttribute("data-charts-drawn", "true");
      })
      .catch(function () { /* the tables remain */ });
  }

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }
  ready(function () { document.querySelectorAll("[data-station-history]").forEach(draw); });
})();
