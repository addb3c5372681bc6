// Fil live timeline: keeps the server-rendered page current over the event's websocket.
// Resumes with ?since=<last seq> after any drop, so nothing is missed or shown twice.
(function () {
  "use strict";
  var timeline = document.getElementById("timeline");
  if (!timeline || !window.WebSocket) return;
  var slug = timeline.dataset.slug;
  var order = timeline.dataset.order || "newest";
  var tz = timeline.dataset.tz || "UTC";
  var lang = timeline.dataset.lang || "en";
  var seq = parseInt(timeline.dataset.seq || "0", 10);
  var T = JSON.parse(document.getElementById("fil-strings").textContent);
  var conn = document.getElementById("conn");
  var announce = document.getElementById("announce");
  var socket = null;
  var backoff = 1000;
  var resetting = false;
  var held = [];
  var clock = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: tz });

  function status(text, state) {
    if (!conn) return;
    conn.textContent = text;
    conn.dataset.state = state;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function safeHref(url) {
    return /^https?:\/\//i.test(url || "") ? url : null;
  }

  function sortKey(item) {
    var published = Date.parse(item.published_at);
    var seen = Date.parse(item.first_seen_at);
    return Math.min(published, seen);
  }

  function render(item) {
    var article = el("article", "item role-" + item.role + " kind-" + item.kind);
    article.id = "item-" + item.id;
    article.dataset.id = item.id;
    article.dataset.sort = String(sortKey(item));
    article.dataset.pinned = item.pinned ? "1" : "0";
    article.dataset.version = String(item.version);
    if (item.pinned || item.key_moment) {
      var flags = el("p", "flags");
      if (item.pinned) flags.appendChild(el("span", "pin", T.pinned));
      if (item.key_moment) flags.appendChild(el("span", "moment", item.key_moment));
      article.appendChild(flags);
    }
    if (item.note) article.appendChild(el("p", "note", item.note));
    if (item.reposted_by) {
      var shared = el("p", "reposted", T.reposted_by + " ");
      var by = item.reposted_by.name || item.reposted_by.handle || "";
      if (safeHref(item.reposted_by.url)) {
        var byLink = el("a", null, by); byLink.href = item.reposted_by.url; byLink.rel = "noopener noreferrer";
        shared.appendChild(byLink);
      } else {
        shared.appendChild(document.createTextNode(by));
      }
      article.appendChild(shared);
    }
    var head = el("header");
    head.appendChild(el("span", "badge", T[item.role] || item.role));
    var author = item.author || {};
    if (safeHref(author.avatar)) {
      var avatar = el("img", "avatar");
      avatar.src = author.avatar; avatar.alt = ""; avatar.width = 32; avatar.height = 32; avatar.loading = "lazy";
      head.appendChild(avatar);
    }
    var who = el(safeHref(author.url) ? "a" : "span", "author", author.name || item.source.label);
    if (safeHref(author.url)) { who.href = author.url; who.rel = "noopener noreferrer"; }
    head.appendChild(who);
    if (author.handle) head.appendChild(el("span", "handle", author.handle));
    var link = el("a", "time");
    link.href = "#item-" + item.id;
    var time = el("time", null, clock.format(new Date(item.published_at)));
    time.dateTime = item.published_at;
    link.appendChild(time);
    head.appendChild(link);
    if (item.updated_at) head.appendChild(el("span", "updated", "(" + T.updated + ")"));
    article.appendChild(head);
    if (item.title) {
      var h = el("h2", "title");
      var href = safeHref(item.url);
      if (href) {
        var a = el("a", null, item.title); a.href = href; a.rel = "noopener noreferrer"; h.appendChild(a);
      } else {
        h.textContent = item.title;
      }
      article.appendChild(h);
    }
    var holder = article;
    if (item.content_warning) {
      holder = el("details", "cw");
      holder.appendChild(el("summary", null, T.content_warning + ": " + item.content_warning));
      article.appendChild(holder);
    }
    if (item.html) {
      var body = el("div", "body");
      body.innerHTML = item.html; // sanitized by the server's allowlist (nh3)
      holder.appendChild(body);
    } else if (item.text) {
      holder.appendChild(el("p", "body", item.text));
    }
    (item.media || []).forEach(function (m) {
      if (!safeHref(m.url)) return;
      if (item.html && item.html.indexOf(m.url) !== -1) return; // already shown in the body
      if (m.type === "image") {
        var img = el("img", "media");
        img.src = m.url; img.alt = m.alt || ""; img.loading = "lazy";
        holder.appendChild(img);
      } else if (safeHref(m.thumbnail)) {
        var video = el("a", "media video"); video.href = m.url; video.rel = "noopener noreferrer";
        var poster = el("img"); poster.src = m.thumbnail; poster.alt = m.alt || ""; poster.loading = "lazy";
        video.appendChild(poster);
        holder.appendChild(video);
      }
    });
    if (item.card && safeHref(item.card.url)) {
      var card = el("a", "card card-" + item.card.kind); card.href = item.card.url; card.rel = "noopener noreferrer";
      if (safeHref(item.card.image)) { var ci = el("img"); ci.src = item.card.image; ci.alt = ""; ci.loading = "lazy"; card.appendChild(ci); }
      var ct = el("span", "card-text");
      if (item.card.author) ct.appendChild(el("span", "card-author", item.card.author.name || item.card.author.handle || ""));
      if (item.card.title) ct.appendChild(el("strong", null, item.card.title));
      if (item.card.description) ct.appendChild(el("span", null, item.card.description));
      card.appendChild(ct);
      holder.appendChild(card);
    }
    var foot = el("footer");
    var src = el("a", "source", item.source.label);
    src.href = safeHref(item.url) || "#"; src.rel = "noopener noreferrer";
    foot.appendChild(src);
    article.appendChild(foot);
    return article;
  }

  // true when a goes above b
  function before(a, b) {
    var pa = a.dataset.pinned === "1", pb = b.dataset.pinned === "1";
    if (pa !== pb) return pa;
    var ka = +a.dataset.sort, kb = +b.dataset.sort;
    if (ka !== kb) return order === "oldest" ? ka < kb : ka > kb;
    return order === "oldest" ? a.dataset.id < b.dataset.id : a.dataset.id > b.dataset.id;
  }

  function place(node) {
    var child = timeline.firstElementChild;
    while (child && !before(node, child)) child = child.nextElementSibling;
    timeline.insertBefore(node, child);
  }

  function upsert(item) {
    var node = render(item);
    var old = document.getElementById("item-" + item.id);
    var empty = document.getElementById("empty");
    if (empty) empty.remove();
    if (old && old.parentNode === timeline) {
      if (old.dataset.sort === node.dataset.sort && old.dataset.pinned === node.dataset.pinned) {
        timeline.replaceChild(node, old); // an edit stays where it was
        return;
      }
      old.remove();
    } else if (announce) {
      announce.textContent = T.new_item + ": " + (item.title || (item.author && item.author.name) || item.source.label);
    }
    place(node);
  }

  function remove(id) {
    var old = document.getElementById("item-" + id);
    if (old) old.remove();
  }

  function handle(message) {
    if (message.type === "upsert" || message.type === "remove") {
      if (resetting) { held.push(message); return; }
      if (message.seq <= seq) return; // already shown (a resume may overlap what the page had)
      seq = message.seq;
      if (message.type === "upsert") upsert(message.item); else remove(message.id);
    } else if (message.type === "reset") {
      reload();
    } else if (message.type === "header") {
      showHeader(message.header);
    }
    // hello and unknown types need nothing
  }

  // The editors' header block (summary, key facts, standings), replaced whole on every change.
  // summary_html is sanitized by the server; everything else goes in as text.
  function showHeader(header) {
    var box = document.getElementById("header");
    if (!box) return;
    var empty = !header || (!header.summary_html && !(header.facts || []).length && !(header.standings || []).length);
    box.hidden = empty;
    if (empty) { box.replaceChildren(); return; }
    var nodes = [];
    if (header.summary_html) {
      var summary = el("div", "summary");
      summary.innerHTML = header.summary_html;
      nodes.push(summary);
    }
    if ((header.facts || []).length) {
      var facts = el("dl", "facts");
      header.facts.forEach(function (f) {
        var row = el("div");
        row.appendChild(el("dt", null, f.label));
        row.appendChild(el("dd", null, f.value));
        facts.appendChild(row);
      });
      nodes.push(facts);
    }
    if ((header.standings || []).length) {
      var standings = el("ol", "standings");
      header.standings.forEach(function (s) {
        var li = el("li");
        if (s.rank) { li.appendChild(el("span", "rank", s.rank)); li.appendChild(document.createTextNode(" ")); }
        li.appendChild(el("span", "name", s.name));
        if (s.detail) { li.appendChild(document.createTextNode(" ")); li.appendChild(el("span", "detail", s.detail)); }
        standings.appendChild(li);
      });
      nodes.push(standings);
    }
    box.replaceChildren.apply(box, nodes);
    if (announce) announce.textContent = T.header || "";
  }

  function reload() {
    resetting = true;
    held = [];
    fetch("/api/events/" + encodeURIComponent(slug) + "/items?limit=50", { headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (page) {
        var nodes = page.items.map(render);
        timeline.replaceChildren.apply(timeline, nodes);
        seq = page.seq;
        if ("header" in page) showHeader(page.header);
      })
      .catch(function () { if (socket) socket.close(); })
      .finally(function () {
        resetting = false;
        var pending = held; held = [];
        pending.forEach(handle);
      });
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + location.host + "/api/events/" + encodeURIComponent(slug) + "/live?since=" + seq;
    status(T.connecting, "connecting");
    socket = new WebSocket(url);
    socket.onopen = function () { backoff = 1000; status(T.connected, "live"); };
    socket.onmessage = function (e) {
      var message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      if (message && typeof message.type === "string") handle(message);
    };
    socket.onclose = function (e) {
      socket = null;
      if (e.code === 4404) { status(e.reason || "", "closed"); return; }
      status(T.offline, "offline");
      var wait = backoff + Math.random() * backoff / 2;
      backoff = Math.min(backoff * 2, 30000);
      setTimeout(connect, wait);
    };
  }

  window.filLive = { seq: function () { return seq; } };
  connect();
})();
