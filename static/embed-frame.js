// Fil embed frame: tells the page that frames this timeline how tall its content is, so that
// embed.js can size the iframe (no inner scrollbar, no empty space). Nothing else crosses frames.
(function () {
  "use strict";
  if (window.parent === window) return; // opened on its own: nothing to size
  var last = -1;

  function report() {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height === last) return;
    last = height;
    // Only a height crosses, and anyone can learn it by loading this public page: so any parent may
    // read it ("*"; the parent's origin is not known in a plain <iframe> and may be hidden by its
    // referrer policy). The check that matters is on the receiving side: embed.js believes only
    // messages from its own frame and from Fil's origin.
    window.parent.postMessage({ type: "fil:height", height: height }, "*");
  }

  if (window.ResizeObserver) {
    // fires after layout whenever the content grows or shrinks: new items, images loading, a wider frame
    new ResizeObserver(report).observe(document.documentElement);
  } else {
    setInterval(report, 1000);
  }
  window.addEventListener("load", report);
  report();
})();
