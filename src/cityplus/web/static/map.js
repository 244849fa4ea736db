/* CityPlus portal: a map of points for any element with data-map="#<id of a JSON script element>", drawn with
   Leaflet when the page loaded it (pinned in package-lock.json). Without Leaflet or JavaScript the element stays
   hidden and the page's table shows the same points. No tile server is contacted: points are drawn on a plain
   background with a scale, so no visitor data leaves the platform and the strict Content-Security-Policy holds. */
(function () {
  "use strict";

  function draw(el) {
    var source = document.querySelector(el.getAttribute("data-map"));
    if (!source || !window.L) { return; }
    var points;
    try { points = JSON.parse(source.textContent); } catch (e) { return; }
    if (!points.length) { return; }
    el.hidden = false;
    el.setAttribute("role", "region");
    el.setAttribute("aria-label", el.getAttribute("data-map-label") || "");
    var map = window.L.map(el, { attributionControl: false });
    window.L.control.scale({ imperial: false }).addTo(map);
    var bounds = [];
    points.forEach(function (p) {
      var colour = p.status === "online" ? "#1a7f37" : (p.status === "offline" ? "#b42318" : "#6e7781");
      var marker = window.L.circleMarker([p.lat, p.lon], { radius: 7, color: colour, weight: 2, fillOpacity: 0.7 });
      var status = el.getAttribute("data-status-" + p.status) || p.status;
      var link = document.createElement("a");
      link.href = p.href;
      link.textContent = p.name + " (" + p.id + ")";
      var box = document.createElement("div");
      box.appendChild(link);
      box.appendChild(document.createElement("br"));
      box.appendChild(document.createTextNode(status));
      marker.bindPopup(box);
      marker.bindTooltip(p.name + " · " + status);
      marker.addTo(map);
      bounds.push([p.lat, p.lon]);
    });
    map.fitBounds(bounds, { padding: [24, 24], maxZoom: 14 });
  }

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  ready(function () { document.querySelectorAll("[data-map]").forEach(draw); });
})();
