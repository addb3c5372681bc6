// Fil live timeline: keeps a server-rendered timeline current over the event's websocket.
// Resumes with ?since=<last seq> after any drop, so nothing is missed or shown twice, and never moves
// what the reader is reading: below the top, new items wait behind a "N new updates" button.
// Reads #timeline's data-slug, -seq, -order, -lang, -tz, -roles (a comma list; empty: every role),
// -limit (keep at most this many items, the oldest go), -edge ("0": the view holds older items
// only, so new ones are not inserted) and -img ("proxy": CURATION_IMAGE_PROXY is on, so an image loads
// only through the signed path the server put in item.proxied, never from its origin). Works on the
// reader page and on any page with the same markup.
(function () {
  "use strict";
  var timeline = document.getElementById("timeline");
  if (!timeline || !window.WebSocket || !window.fetch) return;
  var data = timeline.dataset;
  var slug = data.slug;
  var order = data.order || "newest";
  var tz = data.tz || "UTC";
  var lang = data.lang || "en";
  var seq = parseInt(data.seq || "0", 10);
  var roles = (data.roles || "").split(",").map(function (r) { return r.trim(); }).filter(Boolean);
  var limit = parseInt(data.limit || "0", 10) || 0;
  var proxy = data.img === "proxy";
  var stringsNode = document.getElementById("fil-strings");
  var T = stringsNode ? JSON.parse(stringsNode.textContent) : {};
  var conn = document.getElementById("conn");
  var announce = document.getElementById("announce") || made("div", "sr-only", "announce", "aria-live");
  var fresh = document.getElementById("fresh") || made("button", "fresh", "fresh");
  var moments = document.getElementById("moments");
  var motion = window.matchMedia ? window.matchMedia("(prefers-reduced-motion: no-preference)") : null;
  var socket = null;
  var backoff = 1000;
  var resetting = false;
  var held = [];      // frames that arrive while a reset reloads the timeline
  var pending = [];   // new items waiting behind the "new updates" button
  var skipped = {};   // new items beyond a view of older items, kept until the view reaches the edge
  var told = 0, toldItem = null, toldTimer = null;
  var clock = format({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  var day = format({ day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  var full = format({ year: "numeric", month: "long", day: "numeric", hour: "2-digit", minute: "2-digit",
                      hourCycle: "h23", timeZoneName: "short" });
  var rel = Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(lang, { numeric: "auto", style: "short" }) : null;
  var YOUTUBE = /^https?:\/\/(?:(?:www\.|m\.)?youtube(?:-nocookie)?\.com\/(?:watch\?(?:[^#]*&)?v=|embed\/|shorts\/|live\/)|youtu\.be\/)([A-Za-z0-9_-]{11})(?:[?&#/]|$)/;

  function made(tag, className, id, live) {
    var node = el(tag, className);
    node.id = id;
    if (live) node.setAttribute(live, "polite");
    if (tag === "button") { node.type = "button"; node.hidden = true; }
    timeline.parentNode.insertBefore(node, timeline);
    return node;
  }

  function format(options) {
    options.timeZone = tz;
    try { return new Intl.DateTimeFormat(lang, options); } catch (e) {
      delete options.timeZone;
      return new Intl.DateTimeFormat(lang, options);
    }
  }

  function status(text, state) {
    if (!conn) return;
    conn.hidden = false;
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

  // the address an item's image loads from: its origin, or (image proxy on) Fil's signed path or nothing
  function imageUrl(item, url) {
    if (!proxy) return safeHref(url);
    var path = item.proxied && safeHref(url) ? item.proxied[url] : null;
    return typeof path === "string" && path.charAt(0) === "/" && path.charAt(1) !== "/" ? path : null;
  }

  // sanitized HTML into `node`; with the image proxy, parsed inert first so no <img> reaches its origin
  function fill(node, item) {
    if (!proxy) { node.innerHTML = item.html; return; }
    var inert = document.createElement("template");
    inert.innerHTML = item.html;
    Array.prototype.forEach.call(inert.content.querySelectorAll("img"), function (img) {
      var path = imageUrl(item, img.getAttribute("src"));
      if (path) img.setAttribute("src", path); else img.parentNode.removeChild(img);
    });
    node.appendChild(inert.content);
  }

  function image(src, alt, className) {
    var img = el("img", className);
    img.src = src; img.alt = alt || ""; img.loading = "lazy"; img.referrerPolicy = "no-referrer";
    return img;
  }

  function link(className, href, text) {
    var a = el("a", className, text);
    a.href = href; a.rel = "noopener noreferrer";
    return a;
  }

  function sortKey(item) {
    return Math.min(Date.parse(item.published_at), Date.parse(item.first_seen_at));
  }

  function wanted(item) {
    return !roles.length || roles.indexOf(item.role) !== -1;
  }

  // "3 min ago" for recent items, the day and time for older ones; the absolute time stays in the title
  function ago(when) {
    var s = (Date.now() - when) / 1000;
    if (!rel || s > 86400 * 0.75) return day.format(when);
    if (s < 45) return T.just_now || clock.format(when);
    if (s < 3600) return rel.format(-Math.max(1, Math.round(s / 60)), "minute");
    return rel.format(-Math.round(s / 3600), "hour");
  }

  function stamp(time) {
    var when = Date.parse(time.dateTime);
    if (isNaN(when)) return;
    var text = ago(when);
    if (time.textContent !== text) time.textContent = text;
    time.title = full.format(when);
    var abs = time.nextElementSibling;
    if (abs && abs.classList.contains("abs")) abs.textContent = ", " + time.title;
  }

  function refreshTimes(root) {
    var times = (root || timeline).querySelectorAll(".time time");
    for (var i = 0; i < times.length; i++) stamp(times[i]);
  }

  function youtubeId(url) {
    var m = YOUTUBE.exec(url || "");
    return m ? m[1] : null;
  }

  // a poster that plays on click; the player (YouTube's no-cookie one, or <video>) loads only then
  function player(href, poster, label, yt, video) {
    var a = link("video", href);
    if (yt) a.dataset.yt = yt; else a.dataset.video = video;
    if (poster) a.appendChild(image(poster, ""));
    var play = el("span", "play", T.play_video || "▶");
    if (label) play.appendChild(el("span", "sr-only", ": " + label));
    a.appendChild(play);
    return a;
  }

  function render(item) {
    var article = el("article", "item role-" + item.role + " kind-" + item.kind);
    article.id = "item-" + item.id;
    article.dataset.id = item.id;
    article.dataset.role = item.role;
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
      if (safeHref(item.reposted_by.url)) shared.appendChild(link(null, item.reposted_by.url, by));
      else shared.appendChild(document.createTextNode(by));
      article.appendChild(shared);
    }
    var head = el("header");
    head.appendChild(el("span", "badge", T[item.role] || item.role));
    var author = item.author || {};
    var avatarUrl = imageUrl(item, author.avatar);
    if (avatarUrl) {
      var avatar = image(avatarUrl, "", "avatar");
      avatar.width = 32; avatar.height = 32;
      head.appendChild(avatar);
    }
    var name = author.name || item.source.label;
    head.appendChild(safeHref(author.url) ? link("author", author.url, name) : el("span", "author", name));
    if (author.handle) head.appendChild(el("span", "handle", author.handle));
    var permalink = el("a", "time");
    permalink.href = "#item-" + item.id;
    var time = el("time");
    time.dateTime = item.published_at;
    permalink.appendChild(time);
    permalink.appendChild(el("span", "sr-only abs"));
    stamp(time);
    head.appendChild(permalink);
    if (item.updated_at) head.appendChild(el("span", "updated", "(" + T.updated + ")"));
    article.appendChild(head);
    if (item.title) {
      var h = el("h2", "title");
      if (safeHref(item.url)) h.appendChild(link(null, item.url, item.title)); else h.textContent = item.title;
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
      fill(body, item); // sanitized by the server's allowlist (nh3)
      holder.appendChild(body);
    } else if (item.text) {
      holder.appendChild(el("p", "body", item.text));
    }
    var played = [];
    (item.media || []).forEach(function (m) {
      if (!safeHref(m.url)) return;
      if (item.html && item.html.indexOf(m.url) !== -1) return; // already shown in the body
      var yt = m.type === "video" ? youtubeId(m.url) : null;
      var thumbnail = imageUrl(item, m.thumbnail);
      if (m.type === "image") {
        var picture = imageUrl(item, m.url);
        if (picture) holder.appendChild(image(picture, m.alt, "media"));
      } else if (yt) {
        played.push(yt);
        holder.appendChild(player("https://www.youtube.com/watch?v=" + yt, thumbnail, m.alt || item.title, yt));
      } else if (m.type === "video") {
        holder.appendChild(player(m.url, thumbnail, m.alt || item.title, null, m.url));
      } else if (thumbnail) {
        var media = link("media", m.url);
        media.appendChild(image(thumbnail, m.alt));
        holder.appendChild(media);
      }
    });
    var card = item.card;
    if (card && safeHref(card.url)) {
      var cyt = youtubeId(card.url);
      var cardImage = imageUrl(item, card.image);
      if (cyt && played.indexOf(cyt) === -1) holder.appendChild(player(card.url, cardImage, card.title, cyt));
      var box = link("card card-" + card.kind, card.url);
      if (cardImage && !cyt) box.appendChild(image(cardImage, ""));
      var ct = el("span", "card-text");
      if (card.author) ct.appendChild(el("span", "card-author", card.author.name || card.author.handle || ""));
      if (card.title) ct.appendChild(el("strong", null, card.title));
      if (card.description) ct.appendChild(el("span", null, card.description));
      box.appendChild(ct);
      holder.appendChild(box);
    }
    var foot = el("footer");
    foot.appendChild(safeHref(item.url) ? link("source", item.url, item.source.label)
                                        : el("span", "source", item.source.label));
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

  function articles() {
    return Array.prototype.filter.call(timeline.children, function (n) { return n.tagName === "ARTICLE"; });
  }

  function shown(id) {
    var node = document.getElementById("item-" + id);
    return node && node.parentNode === timeline ? node : null;
  }

  // Runs a change to the timeline without moving what the reader looks at: the first item still on
  // screen keeps its place, whatever was inserted, grown, shrunk or removed above it.
  function steady(change) {
    var marks = [];
    if (timeline.getBoundingClientRect().top < 0) {
      var nodes = articles();
      for (var i = 0; i < nodes.length && marks.length < 2; i++) {
        var box = nodes[i].getBoundingClientRect();
        if (box.bottom > 0 || marks.length) marks.push({ id: nodes[i].dataset.id, top: box.top });
      }
    }
    change();
    // the anchor itself may have gone (removed, filtered out): the item after it then holds the view
    for (var j = 0; j < marks.length; j++) {
      var now = shown(marks[j].id);
      if (!now) continue;
      var shift = now.getBoundingClientRect().top - marks[j].top;
      if (shift) window.scrollBy(0, shift);
      return;
    }
  }

  // the start of the timeline is on screen (a few pixels of rounding allowed)
  function atTop() {
    return timeline.getBoundingClientRect().top > -8;
  }

  function atEdge() {
    return data.edge !== "0";
  }

  // a replaced item keeps what the reader did with it: an open content warning, the focus
  function carry(old, node) {
    var cw = old.querySelector("details.cw");
    if (cw && cw.open && node.querySelector("details.cw")) node.querySelector("details.cw").open = true;
    var active = document.activeElement;
    if (!active || !old.contains(active)) return null;
    var from = old.querySelectorAll("a[href], button, summary, [tabindex]");
    var index = Array.prototype.indexOf.call(from, active);
    return function () {
      var to = node.querySelectorAll("a[href], button, summary, [tabindex]");
      var target = to[index] || node;
      if (target === node) node.tabIndex = -1;
      target.focus({ preventScroll: true });
    };
  }

  function headline(item) {
    var text = item.title || item.text || (item.author && item.author.name) || item.source.label || "";
    return text.length > 80 ? text.slice(0, 79) + "…" : text;
  }

  function count(n) {
    return n === 1 ? T.new_updates_one : (T.new_updates || "{n}").replace("{n}", n);
  }

  // one short polite announcement per burst of new items, never the items themselves
  function tell(item) {
    told += 1;
    toldItem = item;
    if (toldTimer) return;
    toldTimer = setTimeout(function () {
      toldTimer = null;
      announce.textContent = told === 1 ? T.new_item + ": " + headline(toldItem) : count(told);
      told = 0;
    }, 1000);
  }

  function showFresh() {
    fresh.textContent = count(pending.length);
    fresh.hidden = !pending.length;
  }

  function insertNew(item) {
    var empty = document.getElementById("empty");
    if (empty) empty.remove();
    var node = render(item);
    node.classList.add("arrived");
    place(node);
    return node;
  }

  function trim() {
    if (!limit) return;
    var nodes = articles();
    if (nodes.length <= limit) return;
    var oldest = nodes.filter(function (n) { return n.dataset.pinned !== "1"; })
      .sort(function (a, b) { return +a.dataset.sort - +b.dataset.sort; });
    steady(function () {
      for (var i = 0; i < nodes.length - limit && i < oldest.length; i++) oldest[i].remove();
    });
  }

  // brings the waiting items in; after a click, shows the first of them and moves focus there
  function flush(byReader) {
    var items = pending;
    pending = [];
    showFresh();
    var added = items.map(insertNew);
    trim();
    if (!byReader || !added.length) return;
    var first = articles().filter(function (n) { return added.indexOf(n) !== -1; })[0];
    if (!first) return;
    first.tabIndex = -1;
    first.focus({ preventScroll: true });
    first.scrollIntoView({ block: "start", behavior: motion && motion.matches ? "smooth" : "auto" });
  }

  function pendingIndex(id) {
    for (var i = 0; i < pending.length; i++) if (pending[i].id === id) return i;
    return -1;
  }

  function upsert(item) {
    var old = shown(item.id);
    var waiting = pendingIndex(item.id);
    moment(item);
    if (!wanted(item)) {
      delete skipped[item.id];
      if (waiting !== -1) { pending.splice(waiting, 1); showFresh(); }
      if (old) steady(function () { old.remove(); });
      return;
    }
    if (waiting !== -1) { pending[waiting] = item; return; }
    if (old) {
      var node = render(item);
      var refocus = carry(old, node);
      if (old.dataset.sort === node.dataset.sort && old.dataset.pinned === node.dataset.pinned) {
        steady(function () { timeline.replaceChild(node, old); }); // an edit stays where it was
      } else {
        // moved (pinned, unpinned, redated): two steps, so the view never follows it away
        steady(function () { old.remove(); });
        steady(function () { place(node); });
      }
      if (refocus) refocus();
      return;
    }
    if (!atEdge() && order === "oldest") { skipped[item.id] = item; return; } // arrives with "load later"
    tell(item);
    if (!atEdge()) {
      pending.push(item); // a page of older items: the button leads to the latest
      showFresh();
      return;
    }
    if (order === "newest" && !atTop()) {
      pending.push(item);
      showFresh();
      return;
    }
    if (order === "newest") insertNew(item); // at the top: it flows in
    else steady(function () { insertNew(item); });
    trim();
  }

  function remove(id) {
    var waiting = pendingIndex(id);
    if (waiting !== -1) { pending.splice(waiting, 1); showFresh(); }
    delete skipped[id];
    moment({ id: id });
    var old = shown(id);
    if (old) steady(function () { old.remove(); });
  }

  // the key-moments strip, in time order, each linking to its item
  function moment(item) {
    if (moments) steady(function () { setMoment(item); }); // the strip sits above the timeline
  }

  function setMoment(item) {
    var list = moments.querySelector("ol");
    var old = null;
    for (var li = list.firstElementChild; li; li = li.nextElementSibling) if (li.dataset.id === item.id) old = li;
    if (old) old.remove();
    if (item.key_moment && wanted(item)) {
      var entry = el("li");
      entry.dataset.id = item.id;
      entry.dataset.sort = String(sortKey(item));
      var a = el("a");
      a.href = "#item-" + item.id;
      var time = el("time", null, clock.format(Date.parse(item.published_at)));
      time.dateTime = item.published_at;
      a.appendChild(time);
      a.appendChild(document.createTextNode(" " + item.key_moment));
      entry.appendChild(a);
      var after = list.firstElementChild;
      while (after && +after.dataset.sort <= +entry.dataset.sort) after = after.nextElementSibling;
      list.insertBefore(entry, after);
    }
    moments.hidden = !list.children.length;
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
    var nodes = [];
    if (!empty && header.summary_html) {
      var summary = el("div", "summary");
      summary.innerHTML = header.summary_html;
      nodes.push(summary);
    }
    if (!empty && (header.facts || []).length) {
      var facts = el("dl", "facts");
      header.facts.forEach(function (f) {
        var row = el("div");
        row.appendChild(el("dt", null, f.label));
        row.appendChild(el("dd", null, f.value));
        facts.appendChild(row);
      });
      nodes.push(facts);
    }
    if (!empty && (header.standings || []).length) {
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
    steady(function () {
      box.hidden = empty;
      box.replaceChildren.apply(box, nodes);
    });
    if (!empty) announce.textContent = T.header || "";
  }

  function olderLink() {
    return document.getElementById("older");
  }

  function reachEdge() {
    data.next = "";
    data.edge = "1";
    var later = Object.keys(skipped).map(function (id) { return skipped[id]; });
    skipped = {};
    later.forEach(function (item) { if (!shown(item.id)) insertNew(item); });
    trim();
  }

  function reload() {
    resetting = true;
    held = [];
    fetch("/api/events/" + encodeURIComponent(slug) + "/items?limit=50", { headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (page) {
        seq = page.seq;
        if (!atEdge()) return; // a page of older items stays as the reader has it
        var items = page.items.filter(wanted);
        if (limit) items = items.slice(0, limit);
        pending = [];
        showFresh();
        timeline.replaceChildren.apply(timeline, items.map(render));
        items.forEach(moment);
        data.next = page.next || "";
        var a = olderLink();
        if (a && page.next) {
          a.setAttribute("href", location.pathname + "?before=" + encodeURIComponent(page.next) +
                                 (roles.length ? "&roles=" + roles.join(",") : ""));
        }
        if ("header" in page) showHeader(page.header);
      })
      .catch(function () { if (socket) socket.close(); })
      .finally(function () {
        resetting = false;
        var frames = held; held = [];
        frames.forEach(handle);
      });
  }

  // "load older" (or later, oldest first): the next server-rendered page, its items appended here
  function loadMore(a) {
    if (a.getAttribute("aria-busy") === "true") return;
    var label = a.textContent;
    a.setAttribute("aria-busy", "true");
    a.textContent = T.loading || label;
    fetch(a.href, { headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var box = doc.getElementById("timeline");
        var added = [];
        Array.prototype.slice.call(box ? box.children : []).forEach(function (node) {
          if (node.tagName !== "ARTICLE" || shown(node.dataset.id)) return;
          var copy = document.importNode(node, true);
          timeline.appendChild(copy);
          added.push(copy);
        });
        refreshTimes();
        var next = doc.getElementById("older");
        a.textContent = label;
        a.removeAttribute("aria-busy");
        if (next) {
          a.setAttribute("href", next.getAttribute("href"));
        } else {
          var holder = a.parentNode;
          holder.removeChild(a);
          if (holder.className === "more" && !holder.children.length) holder.parentNode.removeChild(holder);
          if (order === "oldest") reachEdge();
        }
        if (added.length) {
          added[0].tabIndex = -1;
          added[0].focus({ preventScroll: !!next });
        }
      })
      .catch(function () {
        a.textContent = label;
        a.removeAttribute("aria-busy");
        announce.textContent = T.load_failed || "";
      });
  }

  function play(a) {
    var label = a.textContent;
    var box;
    if (a.dataset.yt) {
      if (!/^[A-Za-z0-9_-]{11}$/.test(a.dataset.yt)) return;
      box = el("iframe", "player");
      box.src = "https://www.youtube-nocookie.com/embed/" + a.dataset.yt + "?autoplay=1";
      box.allow = "autoplay; encrypted-media; picture-in-picture; fullscreen";
      box.allowFullscreen = true;
      box.title = label;
    } else {
      var src = safeHref(a.dataset.video);
      if (!src) return;
      box = el("video", "player");
      box.controls = true; box.autoplay = true; box.playsInline = true;
      var poster = a.querySelector("img");
      if (poster) box.poster = poster.src;
      box.src = src;
      box.setAttribute("aria-label", label);
    }
    a.parentNode.replaceChild(box, a);
    box.focus();
  }

  function latestUrl() {
    return location.pathname + (roles.length ? "?roles=" + roles.join(",") : "");
  }

  // a key moment (or a permalink) whose item is not on the page: bring it in, or open the page around it
  function jump(id, e) {
    if (shown(id)) return;
    if (pendingIndex(id) !== -1) { flush(false); return; }
    if (e) e.preventDefault();
    location.assign(location.pathname + "?item=" + encodeURIComponent(id) + "#item-" + id);
  }

  function focusTarget() {
    var m = /^#item-([A-Za-z0-9_-]+)$/.exec(location.hash);
    var node = m && shown(m[1]);
    if (!node) return;
    node.tabIndex = -1;
    node.focus({ preventScroll: true });
  }

  document.addEventListener("click", function (e) {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    var a = e.target.closest ? e.target.closest("a") : null;
    if (!a) return;
    if (a.id === "older") { e.preventDefault(); loadMore(a); return; }
    if (a.dataset.yt || a.dataset.video) { e.preventDefault(); play(a); return; }
    var m = /^#item-([A-Za-z0-9_-]+)$/.exec(a.getAttribute("href") || "");
    if (m && moments && moments.contains(a)) jump(m[1], e);
  });

  fresh.addEventListener("click", function () {
    if (!atEdge()) { location.assign(latestUrl()); return; }
    flush(true);
  });

  var ticking = false;
  window.addEventListener("scroll", function () {
    if (ticking || !pending.length || !atEdge()) return;
    ticking = true;
    requestAnimationFrame(function () {
      ticking = false;
      if (pending.length && atEdge() && atTop()) flush(false);
    });
  }, { passive: true });

  window.addEventListener("hashchange", focusTarget);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refreshTimes(); });
  setInterval(function () { if (!document.hidden) refreshTimes(); }, 30000);

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

  // a permalink to an item older than this page: open the page around it (once: it may be gone);
  // only on the reader page (the one with a key-moments strip), never inside an embed
  var target = /^#item-([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (target && !shown(target[1]) && !/[?&]item=/.test(location.search) && moments) {
    location.replace(location.pathname + "?item=" + encodeURIComponent(target[1]) + location.hash);
    return;
  }
  refreshTimes();
  focusTarget();
  window.filLive = { seq: function () { return seq; } };
  // an ended event is an archive: nothing more will come, so no connection is held open
  if (timeline.dataset.status !== "closed") connect();
})();
