// Fil embed: turns each  <script src="https://FIL/embed.js" data-event="SLUG" async></script>  into an
// iframe of FIL/embed/SLUG placed right after the tag, sized to its content. Several snippets may share
// a page; with `async` the tag that loaded this copy is not reliably known, so every snippet not yet
// handled is handled and marked. Options: data-theme, data-accent, data-roles, data-limit, data-lang.
(function () {
  "use strict";
  var OPTIONS = ["theme", "accent", "roles", "limit", "lang"];
  var MIN_HEIGHT = 80;
  var MAX_HEIGHT = 100000;
  var frames = []; // { frame, origin }: the frames this copy made, and the origin each must speak from

  function embedUrl(script) {
    var url;
    try { url = new URL(script.src, document.baseURI); } catch (e) { return null; }
    if ((url.protocol !== "https:" && url.protocol !== "http:") || !/\/embed\.js$/.test(url.pathname)) return null;
    return url;
  }

  function mount(script) {
    var url = embedUrl(script);
    if (!url) return; // another script that happens to carry data-event
    script.setAttribute("data-fil-embed", "done");
    var slug = script.getAttribute("data-event") || "";
    if (!/^[a-z0-9-]+$/.test(slug)) {
      if (window.console) console.warn("Fil embed: data-event must be an event slug ([a-z0-9-]), not " + JSON.stringify(slug));
      return;
    }
    var query = new URLSearchParams();
    OPTIONS.forEach(function (name) {
      var value = script.getAttribute("data-" + name);
      if (value) query.set(name, value); // checked by the server, which answers a clear 400 in the frame
    });
    query.set("autosize", "1");
    var base = url.pathname.replace(/\/embed\.js$/, ""); // Fil may be served under a path
    var frame = document.createElement("iframe");
    frame.src = url.origin + base + "/embed/" + encodeURIComponent(slug) + "?" + query.toString();
    frame.title = script.getAttribute("data-lang") === "fr" ? "Fil en direct" : "Live timeline";
    frame.loading = "lazy";
    // no top navigation, forms or dialogs from the frame; its links open new, unsandboxed tabs
    frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox");
    frame.className = "fil-embed";
    // CSSOM properties, not a style attribute: allowed by a host page's strict style-src
    frame.style.display = "block";
    frame.style.width = "100%";
    frame.style.border = "0";
    frame.style.height = "400px";
    frames.push({ frame: frame, origin: url.origin });
    var parent = script.parentNode;
    if (!parent || parent === document.head || parent === document.documentElement) {
      document.body.appendChild(frame);
    } else {
      parent.insertBefore(frame, script.nextSibling);
    }
  }

  function mountAll() {
    var scripts = document.querySelectorAll("script[data-event]:not([data-fil-embed])");
    for (var i = 0; i < scripts.length; i++) mount(scripts[i]);
  }

  window.addEventListener("message", function (e) {
    for (var i = 0; i < frames.length; i++) {
      var entry = frames[i];
      if (e.source !== entry.frame.contentWindow) continue;
      // the right window is not enough: it must still hold Fil's page (not something it navigated to)
      if (e.origin !== entry.origin) return;
      var data = e.data;
      if (!data || data.type !== "fil:height" || typeof data.height !== "number" || !isFinite(data.height)) return;
      var height = Math.max(MIN_HEIGHT, Math.min(Math.ceil(data.height), MAX_HEIGHT));
      entry.frame.style.height = height + "px";
      return;
    }
  });

  if (document.body) mountAll();
  else document.addEventListener("DOMContentLoaded", mountAll);
})();
