// medsight account page: change my password (PATCH /api/users/{me} with the old one); an admin
// also lists the users (GET /api/users), adds one (POST /api/users), changes a role and
// disables / enables an account (PATCH /api/users/{name}).  The service checks every rule and
// says why it refused; this page shows its message.
(function () {
  "use strict";
  const root = document.getElementById("account");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const me = root.dataset.username;

  async function call(method, path, body) {
    const resp = await fetch(path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const why = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      throw new Error(why || `HTTP ${resp.status}`);
    }
    return data;
  }
  function say(id, text, ok) {
    $(id).textContent = text;
    $(id).className = ok ? "ok" : "warning";
  }

  $("passwd").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    if (f.password.value !== f.again.value) {
      say("passwd-status", "the two new passwords differ", false);
      return;
    }
    try {
      await call("PATCH", `/api/users/${encodeURIComponent(me)}`, {
        password: f.password.value, old_password: f.old_password.value,
      });
      f.reset();
      say("passwd-status", "password changed; your other sessions have ended", true);
    } catch (err) {
      say("passwd-status", `not changed: ${err.message}`, false);
    }
  });

  if (root.dataset.admin !== "yes") return;
  const roles = Array.from(document.querySelectorAll("#add-user select[name=role] option"))
    .map((o) => o.value);

  function cell(tr, content) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    tr.appendChild(td);
    return td;
  }
  async function change(name, body, done) {
    try {
      await call("PATCH", `/api/users/${encodeURIComponent(name)}`, body);
      say("users-status", done, true);
    } catch (err) {
      say("users-status", `${name}: ${err.message}`, false);
    }
    await load();
  }
  async function load() {
    let data;
    try {
      data = await call("GET", "/api/users");
    } catch (err) {
      say("users-status", `cannot list the users: ${err.message}`, false);
      return;
    }
    const tbody = $("users").querySelector("tbody");
    tbody.textContent = "";
    for (const u of data.users) {
      const tr = document.createElement("tr");
      tr.dataset.user = u.username;
      tr.className = u.active ? "active" : "disabled";
      cell(tr, u.username);
      const select = document.createElement("select");
      select.className = "role";
      for (const r of roles) {
        const o = document.createElement("option");
        o.value = r;
        o.textContent = r;
        o.selected = r === u.role;
        select.appendChild(o);
      }
      select.addEventListener("change", () => change(
        u.username, { role: select.value }, `${u.username} is now ${select.value}`));
      cell(tr, select);
      cell(tr, u.active ? "active" : "disabled");
      cell(tr, String(u.sessions));
      cell(tr, u.created.slice(0, 16).replace("T", " "));
      const button = document.createElement("button");
      button.type = "button";
      button.className = "toggle";
      button.textContent = u.active ? "Disable" : "Enable";
      button.addEventListener("click", () => change(
        u.username, { active: !u.active },
        `${u.username} ${u.active ? "disabled: their sessions have ended" : "enabled"}`));
      cell(tr, button);
      tbody.appendChild(tr);
    }
    root.dataset.loaded = String(Number(root.dataset.loaded || 0) + 1);
  }
  $("add-user").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      await call("POST", "/api/users", {
        username: f.username.value, password: f.password.value, role: f.role.value,
      });
      say("users-status", `added ${f.username.value} (${f.role.value})`, true);
      f.reset();
    } catch (err) {
      say("users-status", `not added: ${err.message}`, false);
    }
    await load();
  });
  load();
})();
