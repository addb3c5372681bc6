// Fil editor desk: the queue and the timeline, live over the desk websocket; actions through the editor API.
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  if (!desk) return;
  var slug = desk.dataset.slug;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var items = {};      // id -> editor item JSON
  var seq = -1;        // the state loaded; -1 until the first load
  var held = [];
  var socket = null, backoff = 1000;
  var conn = document.getElementById("conn");
  var message = document.getElementById("message");
  var search = document.getElementById("search");
  var api = "/api/events/" + encodeURIComponent(slug);
  // CURATION_IMAGE_PROXY: an image in an item loads only through the signed path in item.proxied
  var proxy = desk.dataset.img === "proxy";

  function say(text) { message.textContent = text; }
  function el(tag, cls, text) { var n = document.createElement(tag); if (cls) n.className = cls; if (text) n.textContent = text; return n; }

  function listFor(item) {
    if (item.state === "queued") return "queue";
    if (item.state === "rejected" || item.state === "deleted") return "removed";
    return "timeline";
  }

  var BUTTONS = {
    queued: [["approve", "Approve"], ["reject", "Reject"]],
    published: [["hide", "Hide"], ["delete", "Delete"]],
    hidden: [["unhide", "Unhide"], ["delete", "Delete"]],
    rejected: [["approve", "Approve"], ["delete", "Delete"]],
    deleted: [["restore", "Restore"]]
  };

  function card(item) {
    var node = el("article", "card state-" + item.state + (item.pinned ? " pinned" : ""));
    node.id = "desk-" + item.id; node.tabIndex = 0; node.dataset.id = item.id;
    var meta = el("div", "meta");
    meta.appendChild(el("strong", null, (item.author && item.author.name) || item.source.label));
    meta.appendChild(el("span", null, item.source.label + " · " + item.role));
    meta.appendChild(el("span", null, item.state + (item.pinned ? " · pinned" : "") + (item.key_moment ? " · ★ " + item.key_moment : "")));
    meta.appendChild(el("time", null, new Date(item.published_at).toLocaleTimeString()));
    node.appendChild(meta);
    if (item.note) node.appendChild(el("p", "note", item.note));
    if (item.title) node.appendChild(el("h3", null, item.title));
    var body = el("div", "body");
    if (item.html) fill(body, item); else body.textContent = item.text || ""; // html sanitized server-side
    node.appendChild(body);
    var actions = el("div", "actions");
    (BUTTONS[item.state] || []).forEach(function (b) { actions.appendChild(button(item, b[0], b[1])); });
    actions.appendChild(button(item, item.pinned ? "unpin" : "pin", item.pinned ? "Unpin" : "Pin"));
    actions.appendChild(button(item, item.key_moment ? "unhighlight" : "highlight", item.key_moment ? "Not key" : "Key moment"));
    actions.appendChild(button(item, "note", "Note"));
    if (item.state === "queued") {
      actions.appendChild(button(item, "approve-source", "Approve all from " + item.source.label));
      actions.appendChild(button(item, "reject-source", "Reject all from " + item.source.label));
    }
    // a pasted post (kind "post") is someone else's words: it is not corrected, only moderated
    if (item.source.id === "desk" && item.kind !== "post") actions.appendChild(button(item, "edit", "Correct"));
    node.appendChild(actions);
    node.dataset.search = [item.title, item.text, item.author && item.author.name, item.source.label].join(" ").toLowerCase();
    return node;
  }

  function fill(node, item) {
    if (!proxy) { node.innerHTML = item.html; return; }
    var inert = document.createElement("template"); // parsed here, nothing loads
    inert.innerHTML = item.html;
    Array.prototype.forEach.call(inert.content.querySelectorAll("img"), function (img) {
      var path = (item.proxied || {})[img.getAttribute("src")];
      if (typeof path === "string" && /^\/img\//.test(path)) img.setAttribute("src", path); else img.remove();
    });
    node.appendChild(inert.content);
  }

  function button(item, action, label) {
    var b = el("button", null, label); b.type = "button"; b.dataset.action = action;
    b.addEventListener("click", function () { act(item.id, action); });
    return b;
  }

  function countQueue() {
    document.getElementById("queue-count").textContent = "(" + document.getElementById("queue").children.length + ")";
  }

  function show(item) {
    item.t = Date.parse(item.first_seen_at);
    items[item.id] = item;
    var old = document.getElementById("desk-" + item.id);
    var node = card(item);
    filter(node);
    var list = document.getElementById(listFor(item));
    if (old && old.parentNode === list) { list.replaceChild(node, old); return; }
    if (old) old.remove();
    // live changes are mostly the newest item: the walk from the top stops at once
    var child = list.firstElementChild;
    while (child && items[child.dataset.id].t > item.t) child = child.nextElementSibling;
    list.insertBefore(node, child);
    countQueue();
  }

  // a whole state at once: cards built off-document, sorted once, each list replaced in one go
  function showAll(all) {
    var lists = { queue: document.createDocumentFragment(), timeline: document.createDocumentFragment(),
                  removed: document.createDocumentFragment() };
    items = {};
    all.forEach(function (item) { item.t = Date.parse(item.first_seen_at); items[item.id] = item; });
    all.sort(function (a, b) { return b.t - a.t; }).forEach(function (item) {
      var node = card(item); filter(node); lists[listFor(item)].appendChild(node);
    });
    Object.keys(lists).forEach(function (id) { document.getElementById(id).replaceChildren(lists[id]); });
    countQueue();
  }

  function filter(node) {
    var q = (search.value || "").toLowerCase().trim();
    node.hidden = q !== "" && node.dataset.search.indexOf(q) === -1;
  }
  search.addEventListener("input", function () { document.querySelectorAll(".card").forEach(filter); });

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (j) { return { status: r.status, body: j }; }); });
  }

  var composer = document.getElementById("composer");
  function compose(e) {
    e.preventDefault();
    var f = composer.elements;
    var body = { text: f.text.value, image_url: f.image_url.value || null, image_alt: f.image_alt.value || null,
                 link: f.link.value || null, key_moment: f.key_moment.value || null };
    if (f.publish_at.value) body.publish_at = new Date(f.publish_at.value).toISOString();
    var id = f.item_id.value;
    var url = api + "/posts" + (id ? "/" + encodeURIComponent(id) : "");
    if (id) body.version = items[id] ? items[id].version : undefined;
    fetch(url, { method: id ? "PATCH" : "POST", credentials: "same-origin",
                 headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().then(function (j) { return { status: r.status, body: j }; }); })
      .then(function (r) {
        if (r.status === 200 || r.status === 201) { say(id ? "Corrected." : "Published."); composer.reset(); f.item_id.value = ""; show(r.body.item); }
        else if (r.status === 409) { show(r.body.item); say("Someone corrected this post first: check it and try again."); }
        else say(r.body.error || ("HTTP " + r.status));
      });
  }
  composer.addEventListener("submit", compose);
  composer.addEventListener("reset", function () { composer.elements.item_id.value = ""; document.getElementById("compose-submit").textContent = "Publish"; });

  function edit(item) {
    var f = composer.elements;
    f.item_id.value = item.id;
    f.text.value = item.markdown || item.text || ""; // as written: bold and links survive a correction
    var image = (item.media || [])[0];
    f.image_url.value = image ? image.url : ""; f.image_alt.value = image && image.alt ? image.alt : "";
    f.link.value = item.card ? item.card.url : ""; f.key_moment.value = item.key_moment || "";
    document.getElementById("compose-submit").textContent = "Correct";
    f.text.focus();
  }

  function act(id, action) {
    var item = items[id]; if (!item) return;
    if (action === "edit") return edit(item);
    if (action === "approve-source" || action === "reject-source") {
      return post(api + "/sources/" + encodeURIComponent(item.source.id) + "/actions", { action: action.split("-")[0] })
        .then(function (r) { say(r.status === 200 ? r.body.changed + " items " + action.split("-")[0] + "d" : r.body.error); });
    }
    var body = { action: action, version: item.version };
    if (action === "note") { var text = window.prompt("Editor's note (empty to remove)", item.note || ""); if (text === null) return; body.text = text; }
    if (action === "highlight") { var label = window.prompt("Key moment label (attack, crash, breakaway, finish, result…)", "key moment"); if (label === null) return; body.label = label; }
    post(api + "/items/" + encodeURIComponent(id) + "/actions", body).then(function (r) {
      if (r.status === 200) { say(""); show(r.body.item); }
      else if (r.status === 409) { show(r.body.item); say("Someone changed this item first: it is shown as it is now. Try again if needed."); }
      else say(r.body.error || ("HTTP " + r.status));
    });
  }

  document.addEventListener("keydown", function (e) {
    if (e.target === search || e.ctrlKey || e.metaKey || e.altKey) return;
    var node = document.activeElement && document.activeElement.closest && document.activeElement.closest(".card");
    if (!node) return;
    var item = items[node.dataset.id];
    var map = { a: "approve", r: "reject", p: item.pinned ? "unpin" : "pin", m: item.key_moment ? "unhighlight" : "highlight",
                h: "hide", d: "delete", n: "note", u: item.state === "deleted" ? "restore" : "unhide" };
    if (map[e.key]) { e.preventDefault(); act(item.id, map[e.key]); }
  });

  function load() {
    return fetch(api + "/desk", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { location.href = "/editor/login?next=" + encodeURIComponent(location.pathname); throw new Error("login"); }
      return r.json();
    }).then(function (state) {
      showAll(state.items);
      seq = state.seq;
      var pending = held; held = [];
      pending.forEach(handle);
    });
  }

  function handle(m) {
    if (m.type === "header") { document.dispatchEvent(new CustomEvent("fil:header", { detail: m.header })); return; }
    // the server lost track of this event's log (a process that fell far behind): load the desk afresh
    if (m.type === "reset") { seq = -1; load(); return; }
    if (m.type !== "upsert") return;
    if (seq < 0) { held.push(m); return; }
    if (m.seq <= seq) return;
    seq = m.seq;
    show(m.item);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + api + "/desk/live");
    conn.textContent = "Connecting…"; conn.dataset.state = "connecting";
    socket.onopen = function () { backoff = 1000; conn.textContent = "Live"; conn.dataset.state = "live"; seq = -1; load(); };
    socket.onmessage = function (e) { try { handle(JSON.parse(e.data)); } catch (err) { /* ignore */ } };
    socket.onclose = function (e) {
      conn.textContent = "Offline, reconnecting…"; conn.dataset.state = "offline";
      if (e.code === 4401) { location.href = "/editor/login?next=" + encodeURIComponent(location.pathname); return; }
      setTimeout(connect, backoff + Math.random() * backoff / 2); backoff = Math.min(backoff * 2, 30000);
    };
  }
  connect();
})();

// -- header block editor and source mutes (issue 4 §5b, §2) ------------------------------------------------
// Separate from the desk above on purpose: it loads its own state from /desk and adds a "Mute 30 min" button
// to queue and timeline cards as they appear (matched to a source by its label).
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  var form = document.getElementById("header-form");
  if (!desk || !form) return;
  var api = "/api/events/" + encodeURIComponent(desk.dataset.slug);
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var message = document.getElementById("message");
  var version = 0;
  var sources = [];   // [{id, label, muted_until}]
  var MUTE_MINUTES = 30;

  function say(text) { if (message) message.textContent = text; }
  function send(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body)
    }).then(function (r) { return r.json().then(function (j) { return { status: r.status, body: j }; }); });
  }
  function cells(line) { return line.split("|").map(function (c) { return c.trim(); }); }
  function lines(text) { return text.split("\n").filter(function (l) { return l.trim() !== ""; }); }

  // another editor saved the header: this desk's form follows
  document.addEventListener("fil:header", function (e) { fill(e.detail); });
  function fill(header) {
    var f = form.elements;
    version = header.version || 0;
    f.summary.value = header.summary || "";
    f.facts.value = (header.facts || []).map(function (x) { return x.label + " | " + x.value; }).join("\n");
    f.standings.value = (header.standings || []).map(function (x) {
      return (x.rank || "") + " | " + x.name + (x.detail ? " | " + x.detail : "");
    }).join("\n");
    var shown = document.getElementById("header-version");
    if (shown) shown.textContent = header.updated_by ? "(v" + version + " by " + header.updated_by + ")" : "";
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var f = form.elements;
    var body = {
      version: version,
      summary: f.summary.value,
      facts: lines(f.facts.value).map(function (l) { var c = cells(l); return { label: c[0], value: c.slice(1).join(" | ") }; }),
      standings: lines(f.standings.value).map(function (l) {
        var c = cells(l);
        return c.length === 1 ? { name: c[0] } : { rank: c[0] || null, name: c[1], detail: c.slice(2).join(" | ") };
      })
    };
    send("PUT", api + "/header", body).then(function (r) {
      if (r.status === 200) { fill(r.body.header); say("Header saved."); }
      else if (r.status === 409) { fill(r.body.header); say("Someone changed the header first: it is shown as it is now."); }
      else say(r.body.error || ("HTTP " + r.status));
    });
  });

  function mutedUntil(source) {
    var until = source && source.muted_until ? Date.parse(source.muted_until) : 0;
    return until > Date.now() ? until : 0;
  }
  function byLabel(label) {
    var found = sources.filter(function (s) { return s.label === label; });
    return found.length === 1 ? found[0] : null;
  }
  function mute(source, minutes) {
    send("POST", api + "/sources/" + encodeURIComponent(source.id) + "/mute", { minutes: minutes }).then(function (r) {
      if (r.status !== 200) { say(r.body.error || ("HTTP " + r.status)); return; }
      source.muted_until = r.body.muted_until;
      say(minutes ? source.label + " muted until " + new Date(mutedUntil(source)).toLocaleTimeString() : source.label + " unmuted.");
      render();
    });
  }
  function muteButton(source) {
    var until = mutedUntil(source);
    var b = document.createElement("button");
    b.type = "button"; b.className = "mute";
    b.textContent = until ? "Unmute (muted until " + new Date(until).toLocaleTimeString() + ")" : "Mute " + MUTE_MINUTES + " min";
    b.addEventListener("click", function () { mute(source, until ? 0 : MUTE_MINUTES); });
    return b;
  }

  function decorate(node) {
    var meta = node.querySelector(".meta span");
    var actions = node.querySelector(".actions");
    if (!meta || !actions) return;
    var source = byLabel(meta.textContent.split(" · ")[0]);
    var old = actions.querySelector("button.mute");
    if (old) old.remove();
    if (source && source.id !== "desk") actions.appendChild(muteButton(source));
  }
  function render() {
    var list = document.getElementById("mute-list");
    if (list) {
      list.replaceChildren.apply(list, sources.map(function (s) {
        var li = document.createElement("li");
        li.dataset.source = s.id;
        li.appendChild(document.createTextNode(s.label + " "));
        // where it comes from and how it is doing, in plain words
        var health = s.state === "ok" ? "ok" : s.state + (s.failing_since ? " since " + new Date(s.failing_since).toLocaleTimeString() : "");
        var info = document.createElement("small");
        info.className = "source-health state-" + (s.state || "pending").replace(" ", "-");
        info.textContent = "(" + (s.kind || "") + ", from " + s.origin + ", " + health +
          (s.last_error && s.state !== "ok" ? ": " + s.last_error : "") + ", " + (s.items_seen || 0) + " items) ";
        li.appendChild(info);
        li.appendChild(muteButton(s));
        if (s.origin === "desk") {
          var remove = document.createElement("button");
          remove.type = "button"; remove.className = "remove-source"; remove.textContent = "Remove";
          remove.addEventListener("click", function () {
            send("DELETE", api + "/sources/" + encodeURIComponent(s.id)).then(reloadSources);
          });
          li.appendChild(remove);
        }
        return li;
      }));
    }
    document.querySelectorAll("#queue .card, #timeline .card").forEach(decorate);
  }

  var watch = new MutationObserver(function (records) {
    records.forEach(function (r) { r.addedNodes.forEach(function (n) { if (n.classList && n.classList.contains("card")) decorate(n); }); });
  });
  ["queue", "timeline"].forEach(function (id) { var list = document.getElementById(id); if (list) watch.observe(list, { childList: true }); });
  setInterval(render, 60000);  // a mute ends on its own: the buttons follow

  function reloadSources() {
    return fetch(api + "/desk", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; }).then(function (state) {
      if (!state) return;
      if (state.header) fill(state.header);
      sources = state.sources || [];
      render();
    });
  }
  reloadSources();
  setInterval(reloadSources, 15000);  // source health moves on its own

  var addForm = document.getElementById("add-source");
  if (addForm) addForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var definition = {};
    Array.prototype.forEach.call(addForm.elements, function (field) {
      if (field.name && field.value.trim()) definition[field.name] = field.value.trim();
    });
    send("POST", api + "/sources", definition).then(function (r) {
      var message = document.getElementById("message");
      if (r.status === 201) { addForm.reset(); if (message) message.textContent = "Source added."; reloadSources(); }
      else if (message) message.textContent = (r.body && r.body.error) || ("HTTP " + r.status);
    });
  });
})();

// -- paste a post URL (issue 4 §5a) ---------------------------------------------------------------------------
// The server reads the post (Mastodon, Bluesky, YouTube, X) and stores it; the desk websocket then shows it.
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  var form = document.getElementById("paste-form");
  if (!desk || !form) return;
  var api = "/api/events/" + encodeURIComponent(desk.dataset.slug);
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var message = document.getElementById("paste-message");

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var field = form.elements.url;
    var button = form.querySelector("button");
    button.disabled = true;
    message.textContent = "Reading " + field.value + "…";
    fetch(api + "/paste", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ url: field.value })
    }).then(function (r) {
      return r.json().then(function (j) { return { status: r.status, body: j }; }, function () { return { status: r.status, body: {} }; });
    }).then(function (r) {
      if (r.status === 201) { message.textContent = "Added to the timeline."; field.value = ""; }
      else if (r.status === 200) { message.textContent = "Already on the timeline."; field.value = ""; }
      else message.textContent = r.body.error || ("HTTP " + r.status);
    }, function () {
      message.textContent = "Fil could not be reached: try again.";
    }).then(function () { button.disabled = false; });
  });
})();

// -- the audit trail: who did what, when, to which item ------------------------------------------
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  var button = document.getElementById("audit-load");
  var table = document.getElementById("audit");
  if (!desk || !button || !table) return;
  button.addEventListener("click", function () {
    fetch("/api/events/" + encodeURIComponent(desk.dataset.slug) + "/audit", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (answer) {
        var body = table.tBodies[0];
        body.replaceChildren();
        (answer.entries || []).slice(0, 200).forEach(function (entry) {
          var row = document.createElement("tr");
          [new Date(entry.at).toLocaleTimeString(), entry.editor, entry.action, entry.item_id].forEach(function (text) {
            var cell = document.createElement("td"); cell.textContent = text; row.appendChild(cell);
          });
          body.appendChild(row);
        });
        table.hidden = false;
      });
  });
})();
