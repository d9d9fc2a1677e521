// meshpy dashboard: refresh the page's main part from the server every few seconds.
(function () {
  "use strict";
  var main = document.getElementById("content");
  var stamp = document.getElementById("updated");
  if (!main) { return; }
  var url = main.getAttribute("data-partial");
  var every = Number(main.getAttribute("data-refresh-ms")) || 5000;
  function refresh() {
    if (document.hidden) { return; }
    fetch(url, {credentials: "same-origin", cache: "no-store"})
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.text();
      })
      .then(function (html) {
        main.innerHTML = html;
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
        stamp.className = "";
      })
      .catch(function (err) {
        stamp.textContent = "refresh failed: " + err.message;
        stamp.className = "bad";
      });
  }
  setInterval(refresh, every);
})();
