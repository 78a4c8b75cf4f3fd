/* mpqueue dashboard: polls /api/state every few seconds and draws the page with
   DOM calls and textContent only. Nothing the broker holds (task names, error
   messages, arguments) is ever parsed as HTML, so a job named "<script>" is
   shown, not run. Plain JavaScript served by the dashboard itself: no build
   step, no framework, nothing fetched from anywhere else. */
"use strict";

(function () {
  const POLL_MS = 2500;
  const HIDDEN_POLL_MS = 15000;     // a tab in the background polls less often
  const CONFIRM_MS = 4000;          // a destructive button waits this long for its second click
  const SVG = "http://www.w3.org/2000/svg";

  const main = document.querySelector("main");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const readOnly = main.dataset.readOnly === "true";
  const armed = new Map();          // action key -> when its confirmation ends
  const openDetails = new Set();    // failed jobs whose traceback is unfolded
  let timer = null;
  let last = null;

  // -- building blocks
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));   // strings become text nodes
    }
    return e;
  }

  function td(props, ...children) { return el("td", props, ...children); }

  function num(n) { return td({ class: "n" }, n === null || n === undefined ? "–" : Number(n).toLocaleString()); }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function when(epoch) {
    if (typeof epoch !== "number") return "–";
    const d = new Date(epoch * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function code(text, cls) { return el("code", { class: cls || null }, text === null ? "(unreadable)" : text); }

  /* Rows are matched by key and cells by their serialized form, so a row whose
     data did not change keeps its very nodes (a click on its button is never lost
     to a redraw), and only changed cells are replaced. */
  function reconcile(tbody, rows, empty, columns) {
    if (!rows.length) rows = [{ key: "empty", cells: [td({ class: "empty", colspan: columns }, empty)] }];
    const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
    rows.forEach((row, i) => {
      let tr = old.get(row.key);
      if (!tr) {
        tr = el("tr", { "data-key": row.key, class: row.cls || null }, ...row.cells);
      } else {
        old.delete(row.key);
        tr.className = row.cls || "";
        row.cells.forEach((cell, j) => {
          const now = tr.children[j];
          if (!now) tr.append(cell);
          else if (now.outerHTML !== cell.outerHTML) tr.replaceChild(cell, now);
        });
        while (tr.children.length > row.cells.length) tr.lastChild.remove();
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const tr of old.values()) tr.remove();
  }

  function button(action, label, data, confirmLabel) {
    const key = [action, data.queue, data.id || ""].join("|");
    const isArmed = (armed.get(key) || 0) > Date.now();
    return el("button", {
      type: "button", class: "act " + action + (isArmed ? " armed" : ""), "data-action": action,
      "data-queue": data.queue, "data-id": data.id || null, "data-all": data.all ? "true" : null,
      "data-confirm": confirmLabel ? "true" : null, "data-key": key,
    }, isArmed ? confirmLabel : label);
  }

  // -- sections
  function drawQueues(s) {
    const rows = s.queues.map((q) => {
      const c = q.counts;
      const actions = td({ class: "actions" });
      if (!readOnly && c.failed > 0) {
        actions.append(button("retry", "Retry failed", { queue: q.name, all: true }, "Retry all " + c.failed + "?"),
                       button("purge", "Purge failed", { queue: q.name }, "Purge " + c.failed + "?"));
      }
      return {
        key: "q|" + q.name, cls: c.failed > 0 ? "has-failed" : null,
        cells: [td({ class: "name" }, code(q.name), q.declared ? null : el("span", { class: "hint", text: " not in this config" })),
                num(c.ready), num(c.scheduled), num(c.running), num(c.failed), num(c.done_total), num(c.failed_total),
                td({ class: "spark" }, sparkline(q.history)), actions],
      };
    });
    reconcile(document.querySelector("#queues tbody"), rows, "No queue yet.", 9);
  }

  function sparkline(h) {
    const wrap = el("span", { class: "sparkwrap" });
    if (!h || h.done.length < 2) {
      wrap.append(el("span", { class: "hint", text: "sampling…" }));
      return wrap;
    }
    const w = 120, ht = 26, top = Math.max(1, ...h.done, ...h.failed);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${ht}`);
    svg.setAttribute("width", w);
    svg.setAttribute("height", ht);
    svg.setAttribute("class", "sparkline");
    const title = document.createElementNS(SVG, "title");
    title.textContent = `per ${h.every} s, last ${duration(h.every * h.done.length)}: ` +
      `${h.done.reduce((a, b) => a + b, 0)} done, ${h.failed.reduce((a, b) => a + b, 0)} failed`;
    svg.append(title);
    for (const [series, cls] of [[h.done, "spark-done"], [h.failed, "spark-failed"]]) {
      const step = w / Math.max(1, series.length - 1);
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", series.map((v, i) => `${(i * step).toFixed(1)},${(ht - 2 - (v / top) * (ht - 4)).toFixed(1)}`).join(" "));
      line.setAttribute("class", cls);
      svg.append(line);
    }
    wrap.append(svg, el("span", { class: "rate" }, `${h.done_per_min ?? "–"}/min`));
    if (h.failed_per_min) wrap.append(el("span", { class: "rate bad" }, `${h.failed_per_min}/min failed`));
    return wrap;
  }

  function drawNodes(s) {
    const box = document.querySelector("#nodes .cards");
    const cards = s.nodes.nodes.map((n) => nodeCard(n, s.now));
    if (s.nodes.unclaimed.length) cards.push(unclaimedCard(s.nodes.unclaimed));
    if (!cards.length) cards.push(el("p", { class: "empty" }, "No live node: no service is running (or none has sent a heartbeat yet)."));
    box.replaceChildren(...cards);
  }

  function nodeCard(n, now) {
    const gone = n.alive === false;   // its supervisor no longer runs (seen from its host); the record ages out
    const stale = gone || n.heartbeat_age > 45;
    const head = el("div", { class: "card-head" },
      el("strong", {}, n.host || "?"), el("span", { class: "hint" }, ` ${n.service || ""} · pid ${n.pid}`),
      gone ? el("span", { class: "badge err" }, "gone: supervisor not running") : null,
      el("span", { class: "meta" }, typeof n.started_at === "number" && !gone ? `up ${duration(now - n.started_at)} · ` : "",
         el("span", { class: stale ? "bad" : null }, `heartbeat ${duration(n.heartbeat_age)} ago`),
         ` · ${Number(n.done || 0).toLocaleString()} done, ${Number(n.failed || 0).toLocaleString()} failed`));
    const body = el("tbody");
    for (const w of n.workers) {
      body.append(workerRow(`${w.queue}/${w.index}`, w.pid, w.state, w.jobs));
    }
    if (n.other_jobs.length) body.append(workerRow("held by the node", "", "busy", n.other_jobs));
    const table = el("table", { class: "grid workers" },
      el("thead", {}, el("tr", {}, el("th", {}, "worker"), el("th", { class: "n" }, "pid"), el("th", {}, "state"),
                             el("th", {}, "job"), el("th", {}, "task"), el("th", { class: "n" }, "running for"))), body);
    return el("div", { class: gone ? "card gone" : "card", "data-node": n.node }, head, table);
  }

  function unclaimedCard(jobs) {
    const body = el("tbody", {}, ...jobs.map((j) => workerRow(j.consumer, "", "busy", [j])));
    return el("div", { class: "card orphan" },
      el("div", { class: "card-head" }, el("strong", {}, "Held by no live node"),
         el("span", { class: "hint" }, " their leases run out and the jobs come back")),
      el("table", { class: "grid workers" }, body));
  }

  function workerRow(name, pid, state, jobs) {
    const lines = (f) => jobs.map((j) => el("div", {}, f(j)));
    return el("tr", { class: "worker " + state, "data-worker": name },
      td({}, code(name)), td({ class: "n" }, pid === "" || pid === null ? "–" : String(pid)),
      td({}, el("span", { class: "badge " + state }, state)),
      td({}, ...lines((j) => code(j.id))), td({}, ...lines((j) => code(j.task, "task"))),
      td({ class: "n" }, ...lines((j) => (j.age_at_least ? "≥ " : "") + duration(j.age))));
  }

  function drawFailed(s) {
    const f = s.failed;
    const shown = f.jobs.length;
    document.querySelector("#failed .count").textContent = f.total ? (shown < f.total ? `(${shown} of ${f.total})` : `(${f.total})`) : "";
    const rows = f.jobs.map((j) => {
      const key = "f|" + j.queue + "|" + j.id;
      const details = el("details", { "data-key": key, open: openDetails.has(key) },
        el("summary", {}, "traceback and arguments"),
        el("pre", { class: "traceback" }, j.error.traceback || "(no traceback)"),
        el("div", { class: "args" }, el("span", { class: "hint" }, "arguments: "), code(j.args)));
      const actions = td({ class: "actions" });
      if (!readOnly) {
        actions.append(button("retry", "Retry", { queue: j.queue, id: j.id }),
                       button("delete", "Delete", { queue: j.queue, id: j.id }, "Really delete?"));
      }
      return {
        key, cells: [td({}, code(j.queue)), td({}, code(j.id, "job-id")), td({}, code(j.task, "task")),
                     td({ class: "error" }, el("span", { class: "badge err" }, j.error.type || "?"), " ",
                        el("span", { class: "message" }, j.error.message), details),
                     num(j.attempts), td({ class: "when", title: j.error.at ? new Date(j.error.at * 1000).toISOString() : null }, when(j.error.at)),
                     actions],
      };
    });
    reconcile(document.querySelector("#failed tbody"), rows, "No failed job.", 7);
  }

  function drawScheduled(s) {
    const total = s.queues.reduce((a, q) => a + q.counts.scheduled, 0);
    const shown = s.scheduled.length;
    document.querySelector("#scheduled .count").textContent = total ? (shown < total ? `(${shown} of ${total})` : `(${total})`) : "";
    const rows = s.scheduled.map((j) => ({
      key: "s|" + j.queue + "|" + j.id,
      cells: [td({ title: new Date(j.due_at * 1000).toISOString() },
                 j.due_at > s.now ? "in " + duration(j.due_at - s.now) : "due now", el("span", { class: "hint" }, " " + when(j.due_at))),
              td({}, code(j.queue)), td({}, code(j.id, "job-id")), td({}, code(j.task, "task")), num(j.attempts)],
    }));
    reconcile(document.querySelector("#scheduled tbody"), rows, "No scheduled job.", 5);
  }

  function drawSchedules(s) {
    const list = s.schedules || [];
    document.querySelector("#schedules .count").textContent = list.length ? `(${list.length})` : "";
    const rows = list.map((r) => ({
      key: "p|" + r.name,
      cells: [td({}, code(r.name)), td({}, r.schedule), td({}, code(r.task, "task")),
              td({}, r.queue === null ? "–" : code(r.queue)),
              td({}, r.last_fired_at === null ? "never" : when(r.last_fired_at)),
              td({ title: new Date(r.next_at * 1000).toISOString() },
                 r.next_at > s.now ? "in " + duration(r.next_at - s.now) : "due now",
                 el("span", { class: "hint" }, " " + when(r.next_at)))],
    }));
    reconcile(document.querySelector("#schedules tbody"), rows, "No schedule.", 6);
  }

  function drawQueueChoice(s) {
    const select = document.getElementById("lookup-queue");
    const names = s.queues.map((q) => q.name);
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join("\n") === names.join("\n")) return;
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "any queue"), ...names.map((n) => el("option", { value: n }, n)));
    select.value = names.includes(chosen) ? chosen : "";
  }

  function draw(s) {
    drawQueues(s);
    drawNodes(s);
    drawFailed(s);
    drawScheduled(s);
    drawSchedules(s);
    drawQueueChoice(s);
  }

  // -- talking to the dashboard
  async function refresh() {
    clearTimeout(timer);
    try {
      const r = await fetch("/api/state", { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { location.assign("/login"); return; }
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || "the dashboard answered " + r.status);
      last = body;
      draw(body);
      live(true, body.now);
      banner(null);
    } catch (err) {
      live(false);
      banner((err && err.message) || String(err));
    } finally {
      timer = setTimeout(refresh, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  function live(ok, now) {
    const box = document.getElementById("live");
    box.className = "live " + (ok ? "ok" : "down");
    box.textContent = ok ? "live · " + new Date(now * 1000).toLocaleTimeString() : "not updating · retrying";
  }

  function banner(message) {
    const box = document.getElementById("banner");
    box.hidden = !message;
    box.textContent = message || "";
  }

  let flashTimer = null;
  function flash(message, bad) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = "flash" + (bad ? " bad" : "");
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    const out = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(out.error || "the dashboard answered " + r.status);
    return out;
  }

  function outcome(action, out) {
    if (action === "retry") {
      return `Requeued ${out.requeued} job(s) of ${out.queue}` + (out.not_found.length ? `; no longer failed: ${out.not_found.join(", ")}` : "");
    }
    if (action === "delete") return `Deleted ${out.deleted} failed job(s) of ${out.queue}`;
    return `Purged ${out.dropped} failed job(s) of ${out.queue}`;
  }

  async function act(b) {
    const { action, queue, id, key } = b.dataset;
    if (b.dataset.confirm && !((armed.get(key) || 0) > Date.now())) {
      armed.set(key, Date.now() + CONFIRM_MS);          // first click: ask for a second one
      if (last) draw(last);
      setTimeout(() => { armed.delete(key); if (last) draw(last); }, CONFIRM_MS + 50);
      return;
    }
    armed.delete(key);
    const body = { queue };
    if (b.dataset.all) body.all = true; else body.ids = [id];
    b.disabled = true;
    try {
      flash(outcome(action, await post("/api/" + action, body)));
    } catch (err) {
      flash((err && err.message) || String(err), true);
    }
    refresh();
  }

  async function lookup(ev) {
    ev.preventDefault();
    const id = document.getElementById("lookup-id").value.trim();
    const queue = document.getElementById("lookup-queue").value;
    const box = document.getElementById("lookup-result");
    if (!id) return;
    const q = "id=" + encodeURIComponent(id) + (queue ? "&queue=" + encodeURIComponent(queue) : "");
    try {
      const r = await fetch("/api/job?" + q, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      const out = await r.json().catch(() => ({}));
      box.replaceChildren(r.ok ? jobView(out) : el("p", { class: "error" }, out.error || "the dashboard answered " + r.status));
    } catch (err) {
      box.replaceChildren(el("p", { class: "error" }, (err && err.message) || String(err)));
    }
  }

  function jobView(job) {
    const dl = el("dl", { class: "job" });
    for (const [k, v] of Object.entries(job)) {
      if (v === null || v === undefined) continue;
      let value;
      if (k === "state") value = el("span", { class: "badge " + v }, v);
      else if (typeof v === "object") value = el("pre", {}, JSON.stringify(v, null, 2));
      else if (/_at$/.test(k) && typeof v === "number") value = when(v);
      else value = code(String(v));
      dl.append(el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, value));
    }
    return dl;
  }

  // -- wiring
  main.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (b && !b.disabled) act(b);
  });
  main.addEventListener("toggle", (ev) => {
    const d = ev.target;
    if (d.tagName !== "DETAILS" || !d.dataset.key) return;
    if (d.open) openDetails.add(d.dataset.key); else openDetails.delete(d.dataset.key);
  }, true);
  document.getElementById("lookup-form").addEventListener("submit", lookup);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
