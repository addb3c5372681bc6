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
    if (item.html) body.innerHTML = item.html; else body.textContent = item.text || ""; // html sanitized server-side
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
    if (item.source.id === "desk") actions.appendChild(button(item, "edit", "Correct"));
    node.appendChild(actions);
    node.dataset.search = [item.title, item.text, item.author && item.author.name, item.source.label].join(" ").toLowerCase();
    return node;
  }

  function button(item, action, label) {
    var b = el("button", null, label); b.type = "button"; b.dataset.action = action;
    b.addEventListener("click", function () { act(item.id, action); });
    return b;
  }

  function show(item) {
    items[item.id] = item;
    var old = document.getElementById("desk-" + item.id);
    var node = card(item);
    filter(node);
    var list = document.getElementById(listFor(item));
    if (old && old.parentNode === list) { list.replaceChild(node, old); return; }
    if (old) old.remove();
    var child = list.firstElementChild;
    var key = Date.parse(item.first_seen_at);
    while (child && Date.parse(items[child.dataset.id].first_seen_at) > key) child = child.nextElementSibling;
    list.insertBefore(node, child);
    document.getElementById("queue-count").textContent = "(" + document.getElementById("queue").children.length + ")";
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
    f.text.value = item.text || "";
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
      ["queue", "timeline", "removed"].forEach(function (id) { document.getElementById(id).replaceChildren(); });
      items = {};
      state.items.forEach(show);
      seq = state.seq;
      var pending = held; held = [];
      pending.forEach(handle);
    });
  }

  function handle(m) {
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
