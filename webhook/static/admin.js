// The status page's live parts: subscription countdowns and presence/profile updates over SSE.
// Values only ever reach the page through textContent, never as HTML.
(function () {
  "use strict";

  function remaining(seconds) {
    if (seconds <= 0) { return "expired"; }
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = Math.floor(seconds % 60);
    if (d > 0) { return "in " + d + "d " + h + "h"; }
    if (h > 0) { return "in " + h + "h " + m + "m"; }
    return "in " + m + "m " + (s < 10 ? "0" : "") + s + "s";
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = parseFloat(el.dataset.expires) - now;
      el.textContent = remaining(left);
      el.className = "badge " + (left <= 0 ? "bad" : left < 15 * 60 ? "warn" : "ok");
    });
  }

  function presenceClass(availability) {
    switch (availability) {
      case "Available": case "AvailableIdle": return "ok";
      case "Busy": case "BusyIdle": case "DoNotDisturb": return "bad";
      case "Away": case "BeRightBack": return "warn";
      default: return "off";
    }
  }

  function rowFor(tenant, user) {
    // Compared through dataset, not a CSS selector built from the values.
    var rows = document.querySelectorAll("tr[data-user]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].dataset.tenant === tenant && rows[i].dataset.user === user) { return rows[i]; }
    }
    return null;
  }

  function show(change) {
    var row = rowFor(change.tenant, change.user);
    if (!row) { return; }
    var presence = row.querySelector(".presence"), profile = row.querySelector(".profile");
    if (change.availability !== undefined && presence) {
      var text = change.availability || "unknown";
      if (change.activity && change.activity !== change.availability) { text += " · " + change.activity; }
      presence.lastChild.textContent = text;
      presence.firstChild.className = "dot " + presenceClass(change.availability);
    }
    if (change.profile !== undefined && profile) { profile.textContent = change.profile || "—"; }
    var updated = row.querySelector(".updated");
    // The same form as the server's: UTC, to the second.
    if (updated) { updated.textContent = new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
    row.classList.remove("flash");
    void row.offsetWidth;  // restart the highlight animation
    row.classList.add("flash");
  }

  function follow() {
    var live = document.getElementById("live");
    var source = new EventSource("/admin/events");
    source.addEventListener("open", function () { live.className = "live on"; live.textContent = "live"; });
    source.addEventListener("error", function () { live.className = "live off"; live.textContent = "reconnecting"; });
    source.addEventListener("presence", function (event) {
      try { show(JSON.parse(event.data)); } catch (e) { /* a malformed event changes nothing */ }
    });
  }

  tick();
  setInterval(tick, 1000);
  follow();
})();
