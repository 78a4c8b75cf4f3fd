/* mpqueue dashboard: polls /api/state every few seconds and draws the page with
   DOM calls and textContent only. Nothing the broker holds (task names, error
   messages, arguments, tracebacks) is ever parsed as HTML, so a job named
   "<script>" is shown, not run. Plain JavaScript served by the dashboard itself:
   no build step, no framework, nothing fetched from anywhere else.

   The job views (dead, retries, scheduled) show one page, read by the server;
   a traceback is fetched from /api/job when its row is unfolded. */
"use strict";

(function () {
  const main = document.querySelector("main");
  const POLL_MS = Number(main.dataset.pollMs) || 2500;
  const HIDDEN_POLL_MS = 15000;     // a tab in the background polls less often
  const CONFIRM_MS = 4000;          // a destructive button waits this long for its second click
  const LONG_MESSAGE = 240;         // characters past which a message is clamped, with "show more"
  const SVG = "http://www.w3.org/2000/svg";

  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const readOnly = main.dataset.readOnly === "true";
  const armed = new Map();          // action key -> when its confirmation ends
  const openDetails = new Set();    // job rows whose traceback is unfolded
  const expanded = new Set();       // job rows whose long message is shown whole
  const tracebacks = new Map();     // job row key -> fetched traceback (or the error fetching it)
  const selected = new Set();       // job row keys ticked for a bulk action
  const view = { view: "dead", queue: "", task: "", error: "", offset: 0, limit: 50 };
  let timer = null;
  let last = null;
  let filterTimer = null;

  // -- building blocks
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));   // strings become text nodes
    }
    return e;
  }

  function td(props, ...children) { return el("td", props, ...children); }

  function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString(); }

  function num(n) { return td({ class: "n" }, fmt(n)); }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function span(seconds) {         // "5 min", "24 h": the length of a sparkline
    const s = Math.round(seconds);
    if (s < 3600) return duration(s);
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function when(epoch) {
    if (typeof epoch !== "number") return "–";
    const d = new Date(epoch * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function iso(epoch) { return typeof epoch === "number" ? new Date(epoch * 1000).toISOString() : null; }

  function code(text, cls) { return el("code", { class: cls || null }, text === null ? "(unreadable)" : text); }

  /* Rows are matched by key and cells by their serialized form, so a row whose
     data did not change keeps its very nodes (a click on its button is never lost
     to a redraw), and only changed cells are replaced. Each cell gets its column's
     name (data-label): a narrow screen shows the table as stacked cards. */
  function reconcile(tbody, rows, empty, columns) {
    const labels = [...tbody.closest("table").querySelectorAll("thead th")].map((th) => th.textContent);
    if (!rows.length) rows = [{ key: "empty", cells: [td({ class: "empty", colspan: columns }, empty)] }];
    const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
    rows.forEach((row, i) => {
      row.cells.forEach((cell, j) => { if (labels[j] && row.key !== "empty") cell.setAttribute("data-label", labels[j]); });
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

  function isArmed(key) { return (armed.get(key) || 0) > Date.now(); }

  function button(action, label, data, confirmLabel) {
    const key = [action, data.queue || "", data.id || "", data.bulk ? "bulk" : ""].join("|");
    const on = isArmed(key);
    return el("button", {
      type: "button", class: "act " + action + (on ? " armed" : ""), "data-action": action,
      "data-queue": data.queue || null, "data-id": data.id || null, "data-all": data.all ? "true" : null,
      "data-bulk": data.bulk ? "true" : null, "data-confirm": confirmLabel ? "true" : null, "data-key": key,
    }, on ? confirmLabel : label);
  }

  // -- queues
  function drawQueues(s) {
    const rows = s.queues.map((q) => {
      const c = q.counts;
      const actions = td({ class: "actions" });
      if (!readOnly) {
        if (q.paused === true) actions.append(button("resume", "Resume", { queue: q.name }));
        else if (q.paused === false) actions.append(button("pause", "Pause", { queue: q.name }));
        if (c.failed > 0) {
          actions.append(button("retry", "Retry failed", { queue: q.name, all: true }, "Retry all " + fmt(c.failed) + "?"),
                         button("purge", "Purge failed", { queue: q.name }, "Purge " + fmt(c.failed) + "?"));
        }
      }
      const age = q.oldest_age;
      return {
        key: "q|" + q.name, cls: (c.failed > 0 ? "has-failed" : "") + (q.paused ? " paused" : ""),
        cells: [td({ class: "name" }, code(q.name), q.paused ? el("span", { class: "badge paused" }, "paused") : null,
                   q.declared ? null : el("span", { class: "hint", text: " no workers: not in this service's config" })),
                num(c.ready), num(c.scheduled), num(c.running), num(c.failed), num(c.done_total), num(c.failed_total),
                td({ class: "n latency", title: "how long the oldest waiting job has waited" },
                   typeof age !== "number" || (!age && !c.ready) ? "–" : duration(age)),
                td({ class: "spark" }, sparkline(q.history)), actions],
      };
    });
    reconcile(document.querySelector("#queues tbody"), rows, "No queue yet.", 10);
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
    wrap.append(el("span", { class: "hint span" }, "last " + span(h.every * h.done.length)));
    return wrap;
  }

  // -- nodes
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
         ` · ${fmt(n.done || 0)} done, ${fmt(n.failed || 0)} failed`));
    const body = el("tbody");
    for (const w of n.workers) body.append(workerRow(`${w.queue}/${w.index}`, w.pid, w.state, w.jobs));
    if (n.other_jobs.length) body.append(workerRow("held by the node", "", "busy", n.other_jobs));
    return el("div", { class: gone ? "card gone" : "card", "data-node": n.node }, head, workerTable(body));
  }

  function workerTable(body) {
    return el("table", { class: "grid workers stack" },
      el("thead", {}, el("tr", {}, el("th", {}, "worker"), el("th", { class: "n" }, "pid"), el("th", {}, "state"),
                             el("th", {}, "job"), el("th", {}, "task"), el("th", { class: "n" }, "running for"))), body);
  }

  function unclaimedCard(jobs) {
    const body = el("tbody", {}, ...jobs.map((j) => workerRow(j.consumer, "", "busy", [j])));
    return el("div", { class: "card orphan" },
      el("div", { class: "card-head" }, el("strong", {}, "Held by no live node"),
         el("span", { class: "hint" }, " their leases run out and the jobs come back")),
      workerTable(body));
  }

  function workerRow(name, pid, state, jobs) {
    const lines = (f) => el("div", { class: "lines" }, ...jobs.map((j) => el("div", { class: "job-line" }, f(j))));
    const cells = [td({}, code(name)), td({ class: "n" }, pid === "" || pid === null ? "–" : String(pid)),
      td({}, el("span", { class: "badge " + state }, state)),
      td({}, lines((j) => [code(j.id), readOnly ? null : button("cancel", "Cancel", { queue: j.queue, id: j.id }, "Ask it to stop?")])),
      td({}, lines((j) => code(j.task, "task"))),
      td({ class: "n" }, lines((j) => (j.age_at_least ? "≥ " : "") + duration(j.age)))];
    const labels = ["worker", "pid", "state", "job", "task", "running for"];
    cells.forEach((c, i) => c.setAttribute("data-label", labels[i]));
    return el("tr", { class: "worker " + state, "data-worker": name }, ...cells);
  }

  // -- the job views: dead, retries, scheduled
  const VIEW_TEXT = {
    dead: { order: "newest first", empty: "No failed job." },
    retries: { order: "next retry first", empty: "No job waiting for a retry." },
    scheduled: { order: "next due first", empty: "No scheduled job." },
  };

  function drawJobs(s) {
    const v = s.view;
    for (const tab of document.querySelectorAll("#jobs .tab")) {
      tab.classList.toggle("on", tab.dataset.view === view.view);
      tab.setAttribute("aria-selected", tab.dataset.view === view.view ? "true" : "false");
    }
    const failed = s.queues.reduce((a, q) => a + q.counts.failed, 0);
    const scheduled = s.queues.reduce((a, q) => a + q.counts.scheduled, 0);
    document.querySelector('#jobs .tab[data-view="dead"] .count').textContent = fmt(failed);
    document.querySelector('#jobs .tab[data-view="scheduled"] .count').textContent = fmt(scheduled);
    document.getElementById("error-filter").hidden = view.view !== "dead";
    document.getElementById("showing").textContent = showing(v);
    document.getElementById("prev").disabled = v.offset <= 0;
    document.getElementById("next").disabled = v.offset + v.rows.length >= v.total;
    const box = document.getElementById("job-list");
    const keys = new Set(v.rows.map((r) => rowKey(r)));
    for (const k of [...selected]) if (!keys.has(k)) selected.delete(k);
    const old = new Map([...box.children].map((a) => [a.dataset.key, a]));
    const items = v.rows.map((r) => {
      const key = rowKey(r);
      const sig = JSON.stringify(r) + "|" + isArmed("delete|" + r.queue + "|" + r.id + "|") + isArmed("cancel|" + r.queue + "|" + r.id + "|") +
        (r.due_at ? "|" + Math.round(s.now / 10) : "");      // "due in ..." is redrawn every 10 s or so
      const have = old.get(key);
      if (have && have.dataset.sig === sig) return have;
      const a = jobCard(r, key, s.now);
      a.dataset.sig = sig;
      return a;
    });
    if (!items.length) items.push(el("p", { class: "empty" }, v.note || VIEW_TEXT[view.view].empty));
    if (items.length !== box.children.length || items.some((a, i) => box.children[i] !== a)) box.replaceChildren(...items);
    drawBulk();
  }

  function rowKey(r) { return view.view + "|" + r.queue + "|" + r.id; }

  function showing(v) {
    const order = VIEW_TEXT[v.name].order;
    if (v.note) return v.note;
    if (!v.rows.length) {
      if (v.searched !== null && !v.exact) return `no match in the ${fmt(v.searched)} searched of ${fmt(v.of)}`;
      return v.total ? `nothing past ${fmt(v.total)}` : "";
    }
    const range = `${fmt(v.offset + 1)}–${fmt(v.offset + v.rows.length)}`;
    if (v.searched === null) return `showing ${range} of ${fmt(v.total)}, ${order}`;
    const of = v.exact ? `${fmt(v.total)} found` : `${fmt(v.total)} found in the ${fmt(v.searched)} searched of ${fmt(v.of)}`;
    return `showing ${range} of ${of}, ${order}`;
  }

  function jobCard(r, key, now) {
    const dead = view.view === "dead";
    const head = el("div", { class: "job-head" },
      readOnly ? null : el("input", { type: "checkbox", class: "pick", "data-key": key, "aria-label": "select " + r.id, checked: selected.has(key) }),
      code(r.queue, "queue"), code(r.id, "job-id"), code(r.task, "task"),
      r.attempts ? el("span", { class: "badge retry" }, (dead ? "attempts " : "attempt ") + r.attempts) : null,
      dead ? el("span", { class: "when", title: iso(r.at) }, "failed " + when(r.at))
           : el("span", { class: "when", title: iso(r.due_at) }, r.due_at > now ? "due in " + duration(r.due_at - now) : "due now",
                el("span", { class: "hint" }, " " + when(r.due_at))));
    const parts = [head];
    if (r.message !== null || r.type) {
      const long = (r.message || "").length > LONG_MESSAGE || (r.message || "").split("\n").length > 3;
      const msg = el("span", { class: "message" + (long && !expanded.has(key) ? " clamp" : "") }, r.message || "");
      parts.push(el("div", { class: "job-error" }, el("span", { class: "badge err" }, r.type || "?"), " ", msg,
        long ? el("button", { type: "button", class: "more link", "data-key": key }, expanded.has(key) ? "show less" : "show more") : null));
    }
    const fetched = tracebacks.get(key);
    parts.push(el("details", { "data-key": key, "data-queue": r.queue, "data-id": r.id, open: openDetails.has(key) },
      el("summary", {}, r.has_traceback ? "traceback and arguments" : "arguments"),
      r.has_traceback ? el("pre", { class: "traceback" }, fetched === undefined ? "loading…" : fetched) : null,
      el("div", { class: "args" }, el("span", { class: "hint" }, "arguments: "), code(r.args))));
    if (!readOnly) {
      parts.push(el("div", { class: "job-actions" }, ...(dead
        ? [button("retry", "Retry", { queue: r.queue, id: r.id }), button("delete", "Delete", { queue: r.queue, id: r.id }, "Really delete?")]
        : [button("run_now", "Run now", { queue: r.queue, id: r.id }), button("cancel", "Delete", { queue: r.queue, id: r.id }, "Really delete?")])));
    }
    return el("article", { class: "job", "data-key": key }, ...parts);
  }

  function drawBulk() {
    const bar = document.getElementById("bulk");
    bar.hidden = readOnly;
    if (readOnly) return;
    const picks = [...document.querySelectorAll("#job-list input.pick")];
    const all = document.getElementById("pick-all");
    all.checked = picks.length > 0 && picks.every((p) => p.checked);
    all.indeterminate = !all.checked && picks.some((p) => p.checked);
    document.getElementById("picked").textContent = selected.size ? `${selected.size} selected` : "none selected";
    const dead = view.view === "dead";
    const buttons = dead
      ? [button("retry", "Retry selected", { bulk: true }), button("delete", "Delete selected", { bulk: true }, `Delete ${selected.size}?`)]
      : [button("run_now", "Run selected now", { bulk: true }), button("cancel", "Delete selected", { bulk: true }, `Delete ${selected.size}?`)];
    for (const b of buttons) b.disabled = selected.size === 0;
    const box = document.getElementById("bulk-actions");
    const sig = buttons.map((b) => b.outerHTML + b.disabled).join("");
    if (box.dataset.sig !== sig) {
      box.replaceChildren(...buttons);
      box.dataset.sig = sig;
    }
  }

  async function unfold(d) {
    const key = d.dataset.key;
    if (!d.open) { openDetails.delete(key); return; }
    openDetails.add(key);
    const pre = d.querySelector("pre.traceback");
    if (!pre || tracebacks.has(key)) return;
    const q = "id=" + encodeURIComponent(d.dataset.id) + "&queue=" + encodeURIComponent(d.dataset.queue);
    let text;
    try {
      const r = await fetch("/api/job?" + q, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      const out = await r.json().catch(() => ({}));
      const error = out.error && typeof out.error === "object" ? out.error : out.last_error;
      text = r.ok ? ((error && error.traceback) || "(no traceback)") : (out.error || "the dashboard answered " + r.status);
    } catch (err) {
      text = (err && err.message) || String(err);
    }
    tracebacks.set(key, text);
    if (tracebacks.size > 200) tracebacks.delete(tracebacks.keys().next().value);
    pre.textContent = text;
  }

  // -- schedules, the job finder's queue list
  function drawSchedules(s) {
    const list = s.schedules || [];
    document.querySelector("#schedules .count").textContent = list.length ? `(${list.length})` : "";
    const rows = list.map((r) => ({
      key: "p|" + r.name,
      cells: [td({}, code(r.name)), td({}, r.schedule), td({}, code(r.task, "task")),
              td({}, r.queue === null ? "–" : code(r.queue)),
              td({}, r.last_fired_at === null ? "never" : when(r.last_fired_at)),
              td({ title: iso(r.next_at) }, r.next_at > s.now ? "in " + duration(r.next_at - s.now) : "due now",
                 el("span", { class: "hint" }, " " + when(r.next_at)))],
    }));
    reconcile(document.querySelector("#schedules tbody"), rows, "No schedule.", 6);
  }

  function drawQueueChoice(s) {
    const names = s.queues.map((q) => q.name);
    for (const [id, first] of [["lookup-queue", "any queue"], ["view-queue", "all queues"]]) {
      const select = document.getElementById(id);
      const have = [...select.options].slice(1).map((o) => o.value);
      if (have.join("\n") === names.join("\n")) continue;
      const chosen = select.value;
      select.replaceChildren(el("option", { value: "" }, first), ...names.map((n) => el("option", { value: n }, n)));
      select.value = names.includes(chosen) ? chosen : "";
    }
  }

  function draw(s) {
    drawQueues(s);
    drawNodes(s);
    if (s.asked === stateUrl()) drawJobs(s);      // else the view changed meanwhile: its own answer draws it
    drawSchedules(s);
    drawQueueChoice(s);
  }

  // -- talking to the dashboard
  function stateUrl() {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(view)) if (v !== "" && !(k === "offset" && v === 0)) p.set(k, v);
    return "/api/state?" + p.toString();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const asked = stateUrl();
      const r = await fetch(asked, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { location.assign("/login"); return; }
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || "the dashboard answered " + r.status);
      body.asked = asked;
      last = body;
      draw(body);
      live(true, body.now);
      banner(null);
    } catch (err) {
      live(false);
      banner((err && err.message) || String(err));
    } finally {
      clearTimeout(timer);         // two refreshes in flight (a click during a poll) leave one timer
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
    switch (action) {
      case "retry":
        return `Requeued ${out.requeued} job(s) of ${out.queue}` + (out.not_found.length ? `; no longer failed: ${out.not_found.join(", ")}` : "");
      case "delete": return `Deleted ${out.deleted} failed job(s) of ${out.queue}`;
      case "purge": return `Purged ${out.dropped} failed job(s) of ${out.queue}`;
      case "run_now": return `Made ${out.moved} job(s) of ${out.queue} ready to run now`;
      case "pause": return out.changed ? `Paused ${out.queue}: its workers take no new job` : `${out.queue} was paused already`;
      case "resume": return out.changed ? `Resumed ${out.queue}` : `${out.queue} was not paused`;
      case "cancel": {
        const not = Object.keys(out.not_cancelled);
        return [out.cancelled.length ? `Deleted ${out.cancelled.length} waiting job(s) of ${out.queue} (cancelled)` : "",
                out.requested.length ? `Asked ${out.requested.length} running job(s) of ${out.queue} to stop` : "",
                not.length ? `not cancelled: ${not.map((i) => i + " (" + out.not_cancelled[i] + ")").join(", ")}` : ""]
          .filter(Boolean).join("; ");
      }
      default: return "done";
    }
  }

  function bodies(b) {
    if (!b.dataset.bulk) {
      const body = { queue: b.dataset.queue };
      if (b.dataset.all) body.all = true;
      else if (b.dataset.id) body.ids = [b.dataset.id];
      return [body];
    }
    const byQueue = new Map();
    for (const key of selected) {
      const parts = key.split("|");          // view|queue|id (a queue name has no "|"; an id may)
      const queue = parts[1], id = parts.slice(2).join("|");
      if (!byQueue.has(queue)) byQueue.set(queue, []);
      byQueue.get(queue).push(id);
    }
    return [...byQueue].map(([queue, ids]) => ({ queue, ids }));
  }

  async function act(b) {
    const { action, key } = b.dataset;
    if (b.dataset.confirm && !isArmed(key)) {
      armed.set(key, Date.now() + CONFIRM_MS);          // first click: ask for a second one
      if (last) draw(last);
      setTimeout(() => { armed.delete(key); if (last) draw(last); }, CONFIRM_MS + 50);
      return;
    }
    armed.delete(key);
    b.disabled = true;
    const said = [];
    let bad = false;
    for (const body of bodies(b)) {
      try {
        said.push(outcome(action, await post("/api/" + action, body)));
      } catch (err) {
        said.push((err && err.message) || String(err));
        bad = true;
      }
    }
    if (b.dataset.bulk) selected.clear();
    flash(said.join(" · "), bad);
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

  function setView(changes) {
    Object.assign(view, changes);
    if (!("offset" in changes)) view.offset = 0;
    if ("view" in changes || "queue" in changes) selected.clear();
    refresh();
  }

  // -- wiring
  main.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (b && !b.disabled) { act(b); return; }
    const more = ev.target.closest("button.more");
    if (more) {
      const key = more.dataset.key;
      if (expanded.has(key)) expanded.delete(key); else expanded.add(key);
      const msg = more.parentElement.querySelector(".message");
      msg.classList.toggle("clamp", !expanded.has(key));
      more.textContent = expanded.has(key) ? "show less" : "show more";
      return;
    }
    const tab = ev.target.closest("#jobs .tab");
    if (tab) { setView({ view: tab.dataset.view }); return; }
    if (ev.target.id === "prev") setView({ offset: Math.max(0, view.offset - view.limit) });
    if (ev.target.id === "next") setView({ offset: view.offset + view.limit });
  });
  main.addEventListener("change", (ev) => {
    const t = ev.target;
    if (t.classList.contains("pick")) {
      if (t.checked) selected.add(t.dataset.key); else selected.delete(t.dataset.key);
      drawBulk();
    } else if (t.id === "pick-all") {
      for (const p of document.querySelectorAll("#job-list input.pick")) {
        p.checked = t.checked;
        if (t.checked) selected.add(p.dataset.key); else selected.delete(p.dataset.key);
      }
      drawBulk();
    } else if (t.id === "view-queue") setView({ queue: t.value });
    else if (t.id === "view-limit") setView({ limit: Number(t.value) });
  });
  main.addEventListener("input", (ev) => {
    const t = ev.target;
    if (t.id !== "task-filter" && t.id !== "error-filter") return;
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => setView({ [t.id === "task-filter" ? "task" : "error"]: t.value.trim() }), 300);
  });
  main.addEventListener("toggle", (ev) => {
    const d = ev.target;
    if (d.tagName === "DETAILS" && d.dataset.key) unfold(d);
  }, true);
  document.getElementById("lookup-form").addEventListener("submit", lookup);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
