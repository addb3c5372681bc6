// Fil desk front page, admins only: create events, change their status, add and disable editors.
// Each change goes through the admin API; the page then reloads, since these changes are rare.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var message = document.getElementById("message");

  function send(method, path, body, done) {
    message.textContent = "Saving…";
    fetch(path, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (answer) {
        if (r.ok) { done(answer); return; }
        message.textContent = answer.error || ("HTTP " + r.status);
      });
    }).catch(function () { message.textContent = "Fil could not be reached: try again."; });
  }

  function fields(form) {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (el) { if (el.name) out[el.name] = el.type === "password" ? el.value : el.value.trim(); });
    return out;
  }

  var newEvent = document.getElementById("new-event");
  if (newEvent) newEvent.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = fields(newEvent);
    send("POST", "/api/events", body, function () {
      location.assign("/editor/events/" + encodeURIComponent(body.slug));
    });
  });

  Array.prototype.forEach.call(document.querySelectorAll("select.event-status"), function (select) {
    var was = select.value;
    select.addEventListener("change", function () {
      var slug = select.dataset.slug, status = select.value;
      if (status === "closed" && !window.confirm("Close " + slug + "? Its page stays as an archive and stops updating.")) {
        select.value = was; return;
      }
      send("PATCH", "/api/events/" + encodeURIComponent(slug), { status: status }, function () {
        was = status;
        message.textContent = slug + " is now " + status + ".";
      });
    });
  });

  var newEditor = document.getElementById("new-editor");
  if (newEditor) newEditor.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = fields(newEditor);
    send("PUT", "/api/editors/" + encodeURIComponent(body.name), { password: body.password, role: body.role },
      function () { location.reload(); });
  });

  Array.prototype.forEach.call(document.querySelectorAll("button.toggle-editor"), function (button) {
    button.addEventListener("click", function () {
      var disable = button.dataset.disabled !== "true";
      send("POST", "/api/editors/" + encodeURIComponent(button.dataset.name) + "/disabled", { disabled: disable },
        function () { location.reload(); });
    });
  });
})();
