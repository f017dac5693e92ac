// Ingestion dashboard (airflow-provider-dataeng). Plain JS, no dependencies, every URL relative:
// the page lives at <base>/dataeng/dashboard/, its API at ../api/, Airflow's UI at ../../ and its REST API
// at ../../api/v2/ (called with the user's own session: Airflow authorizes backfills and clears itself).
"use strict";
(function () {
  const API = new URL("../api/", location.href);
  const UI = new URL("../../", location.href);
  const REST = new URL("../../api/v2/", location.href);
  const COLORS = { published: "#2e7d32", rejected: "#ef6c00", failed: "#c62828", missing: "#b0bec5" };
  const CODE_STATUS = { P: "published", R: "rejected", F: "failed", M: "missing" };
  const FINAL_RUN_STATES = new Set(["success", "failed"]);
  const $ = (sel) => document.querySelector(sel);

  const state = { overview: null, current: null, detail: null, selection: [], anchor: null, actions: [], timer: null };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c.nodeType ? c : String(c));
    return node;
  }

  async function getJSON(url) {
    const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`${res.status} ${await errorText(res)}`);
    return res.json();
  }
  async function errorText(res) {
    try { const body = await res.json(); return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body); }
    catch (e) { return res.statusText; }
  }
  async function rest(method, path, body) {
    const res = await fetch(new URL(path, REST), {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await errorText(res)}`);
    return res.status === 204 ? null : res.json();
  }

  const enc = encodeURIComponent;
  const runUrl = (dag, run) => new URL(`dags/${enc(dag)}/runs/${enc(run)}`, UI).href;
  const logUrl = (dag, run, task) => new URL(`dags/${enc(dag)}/runs/${enc(run)}/tasks/${enc(task)}`, UI).href;
  const dagUrl = (dag) => new URL(`dags/${enc(dag)}`, UI).href;

  // Inside Airflow's UI the page is an iframe without top-navigation rights: route links through the UI's router.
  function uiLink(href, text) {
    return el("a", {
      href, target: "_top",
      onclick: (ev) => {
        if (window.top === window || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
        try {
          const url = new URL(href);
          window.top.history.pushState(null, "", url.pathname + url.search);
          window.top.dispatchEvent(new PopStateEvent("popstate"));
          ev.preventDefault();
        } catch (e) { /* cross-origin parent: let the browser try */ }
      },
    }, text);
  }

  // Times are shown in UTC (the zone of the DAGs' data intervals), to the minute, seconds only when not zero:
  // "2026-11-29 00:00 UTC". fmtTime: for instants such as "as of" and "loaded at" (to the second).
  const pad = (n) => String(n).padStart(2, "0");
  function parts(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? null : {
      date: `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`,
      hm: `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`, s: d.getUTCSeconds(),
    };
  }
  function fmtDate(iso) {
    const p = iso ? parts(iso) : null;
    if (!p) return iso || "-";
    return `${p.date} ${p.hm}${p.s ? `:${pad(p.s)}` : ""} UTC`;
  }
  function fmtTime(iso) {
    const p = iso ? parts(iso) : null;
    return p ? `${p.date} ${p.hm}:${pad(p.s)} UTC` : (iso || "-");
  }
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  function fmtDuration(sec) {
    if (sec === null || sec === undefined) return "-";
    const s = Math.abs(sec), sign = sec < 0 ? "-" : "";
    if (s < 90) return `${sign}${Math.round(s)}s`;
    if (s < 5400) return `${sign}${Math.round(s / 60)}m`;
    if (s < 172800) return `${sign}${(s / 3600).toFixed(1)}h`;
    return `${sign}${(s / 86400).toFixed(1)}d`;
  }
  const fmtInt = (n) => (n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"));
  function setStatus(text) { $("#status").textContent = text; }

  // ---- overview ---------------------------------------------------------------------------------------------
  // The first overview comes inside the page (script#boot, written by the server); later ones are fetched.
  function bootData() {
    const node = document.getElementById("boot");
    if (!node) return null;
    node.remove();
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  async function loadOverview(first) {
    const data = (first && bootData()) || await getJSON(new URL("targets", API));
    state.overview = data;
    renderErrors(data.errors);
    renderTargets();
    setStatus(`${data.targets.length} target(s), as of ${fmtTime(data.now)}`);
    $("#status").title = data.now;
    return data;
  }

  function renderErrors(errors) {
    const box = $("#errors");
    box.replaceChildren(...(errors || []).map((e) => el("p", {}, `${e.conn_id}: ${e.error}`)));
  }

  // The table is written as one HTML string (50 rows x 6 cells in one parse); a click on a row is handled
  // once on the table body. Each row's calendar strip is a canvas painted after the rows are in place.
  function renderTargets() {
    const q = $("#filter").value.trim().toLowerCase();
    const shown = [], html = [];
    for (const t of state.overview.targets) {
      const name = `${t.dag_id} ${t.schema}.${t.table} ${t.conn_id}`.toLowerCase();
      if (q && !name.includes(q)) continue;
      shown.push(t);
      const c = t.counts, current = state.current && state.current.id === t.id;
      const docs = dbtLinks(t);
      html.push(`<tr data-target="${esc(t.id)}"${current ? ' class="current"' : ""}>` +
        `<td>${esc(t.dag_id)}</td>` +
        `<td>${esc(`${t.schema}.${t.table}`)}${t.conn_id !== "warehouse" ? ` <small>(${esc(t.conn_id)})</small>` : ""}${docs}</td>` +
        `<td title="${esc(t.schedule)}">${esc(t.schedule_description || t.schedule)}</td>` +
        `<td><canvas class="strip" data-codes-length="${t.codes.length}"></canvas></td>` +
        `<td class="counts"><span class="n-published" data-count="published">${c.published}</span>` +
        `<span class="n-rejected" data-count="rejected">${c.rejected}</span>` +
        `<span class="n-failed" data-count="failed">${c.failed}</span>` +
        `<span class="n-missing" data-count="missing">${c.missing}</span></td>` +
        `<td>${freshBadgeHtml(t.freshness)}</td></tr>`);
    }
    const body = $("#targets tbody");
    body.innerHTML = html.join("");
    const canvases = body.querySelectorAll("canvas.strip");
    shown.forEach((t, i) => drawStrip(canvases[i], t.codes));
    state.shown = shown;
    $("#empty").hidden = state.overview.targets.length > 0;
  }

  function onTargetsClick(ev) {
    if (ev.target.closest("a")) return;
    const tr = ev.target.closest("tr[data-target]");
    const t = tr && state.overview.targets.find((x) => x.id === tr.dataset.target);
    if (t) openTarget(t);
  }

  function freshText(f) {
    if (f.status === "fresh") return "fresh";
    if (f.source === "sensor") return `${f.status}: lag ${fmtDuration(f.lag_seconds)}`;
    return `${f.status}: ${f.behind_intervals} behind`;
  }
  function freshTitle(f) {
    const sla = f.source === "sensor"
      ? `SLA of sensor ${f.sensor.dag_id}.${f.sensor.task_id}: warn after ${fmtDuration(f.warn_after_seconds)}, error after ${fmtDuration(f.error_after_seconds)}`
      : `no freshness sensor on this table: warn when ${f.warn_intervals} interval(s) unpublished, error from ${f.error_intervals}`;
    return `latest data up to ${fmtDate(f.latest)}; ${sla}`;
  }
  function freshBadgeHtml(f) {
    return `<span class="badge ${esc(f.status)}" title="${esc(freshTitle(f))}">${esc(freshText(f))}</span>`;
  }
  function freshBadge(f) {
    return el("span", { class: `badge ${f.status}`, title: freshTitle(f) }, freshText(f));
  }

  // One strip per target, at most 600 px: several intervals may share a pixel, the worst status wins; an
  // interval with a queued or running DAG run is a thinner bar. Pixels are classified first, then each run of
  // equal pixels is one rectangle (a mostly green strip of 1,000 intervals is a handful of fillRect calls).
  const SEVERITY = ["P", "M", "R", "F"];
  function drawStrip(canvas, codes) {
    const n = codes.length, W = Math.max(1, Math.min(600, n * 12));
    canvas.width = W; canvas.height = 14; canvas.style.width = `${W}px`;
    const sev = new Int8Array(W).fill(-1), active = new Uint8Array(W);
    for (let i = 0; i < n; i++) {
      const c = codes[i], level = SEVERITY.indexOf(c.toUpperCase()), busy = c !== c.toUpperCase() ? 1 : 0;
      const x0 = Math.floor((i * W) / n), x1 = Math.max(x0 + 1, Math.floor(((i + 1) * W) / n));
      for (let x = x0; x < x1 && x < W; x++) {
        if (level > sev[x]) { sev[x] = level; active[x] = busy; } else if (level === sev[x]) active[x] |= busy;
      }
    }
    const ctx = canvas.getContext("2d");
    for (let x = 0; x < W;) {
      let end = x + 1;
      while (end < W && sev[end] === sev[x] && active[end] === active[x]) end++;
      if (sev[x] >= 0) {
        ctx.fillStyle = COLORS[CODE_STATUS[SEVERITY[sev[x]]]];
        // A lone hole or failure among 1,000 intervals is one pixel: drawn two wide so that it shows.
        const width = sev[x] > 0 && end - x === 1 && end < W && sev[end] < sev[x] ? 2 : end - x;
        ctx.fillRect(x, active[x] ? 3 : 0, width, active[x] ? 8 : 14);
        if (width > end - x) { x = end + 1; continue; }
      }
      x = end;
    }
  }

  // ---- one target -------------------------------------------------------------------------------------------
  async function openTarget(t) {
    state.current = t;
    state.selection = []; state.anchor = null;
    for (const tr of document.querySelectorAll("#targets tbody tr")) tr.classList.toggle("current", tr.dataset.target === t.id);
    $("#detail").hidden = false;  // before rendering: the chart takes the panel's width
    await loadDetail();
    $("#detail").scrollIntoView({ block: "start" });
  }

  async function loadDetail() {
    const t = state.current;
    const params = new URLSearchParams({ conn_id: t.conn_id, dag_id: t.dag_id, schema: t.schema, table: t.table });
    const d = await getJSON(new URL(`target?${params}`, API));
    state.detail = d;
    renderDetail();
    return d;
  }

  function renderDetail() {
    const d = state.detail;
    $("#detail-title").replaceChildren(`${d.schema}.${d.table} `, el("small", {}, "by "), uiLink(dagUrl(d.dag_id), d.dag_id));
    $("#detail-meta").textContent =
      `${d.schedule_description || d.schedule} · ${d.intervals} intervals ${fmtDate(d.first_start)} .. ${fmtDate(d.last_end)} · ` +
      `${d.counts.published} published, ${d.counts.rejected} rejected, ${d.counts.failed} failed, ${d.counts.missing} missing` +
      (d.counts.running ? `, ${d.counts.running} running` : "") +
      (d.partitioned ? ` · ${d.partitions} partitions attached` : d.table_exists === false ? " · table does not exist" : "");
    renderCalendar(d);
    renderSelection();
    renderChart(d);
    renderFreshness(d.freshness);
    renderChecks(d);
  }

  // 1,000 cells in one HTML string; clicks are handled once on the calendar; a new selection only toggles
  // the class of the cells it changes.
  function renderCalendar(d) {
    const sel = new Set(state.selection);
    $("#calendar").innerHTML = d.cells.map((c, i) =>
      `<span class="cell ${c.status}${c.active ? " active" : ""}${sel.has(i) ? " selected" : ""}" data-index="${i}" ` +
      `data-status="${c.status}" data-start="${esc(c.start)}" title="${esc(`${fmtDate(c.start)} .. ${fmtDate(c.end)}: ${c.status}` +
        `${c.rows !== null ? `, ${fmtInt(c.rows)} rows` : ""}${c.run_state ? ` (run ${c.run_state})` : ""}`)}"></span>`).join("");
  }

  function onCalendarClick(ev) {
    const cell = ev.target.closest(".cell");
    if (cell) selectCell(Number(cell.dataset.index), ev.shiftKey);
  }

  function selectCell(i, range) {
    const before = new Set(state.selection);
    if (range && state.anchor !== null) {
      const [a, b] = [Math.min(state.anchor, i), Math.max(state.anchor, i)];
      state.selection = Array.from({ length: b - a + 1 }, (_, k) => a + k);
    } else {
      state.selection = [i]; state.anchor = i;
    }
    const after = new Set(state.selection), cells = $("#calendar").children;
    for (const k of before) if (!after.has(k) && cells[k]) cells[k].classList.remove("selected");
    for (const k of after) if (!before.has(k) && cells[k]) cells[k].classList.add("selected");
    renderSelection();
  }

  function renderSelection() {
    const d = state.detail, box = $("#selection");
    const cells = state.selection.map((i) => d.cells[i]).filter(Boolean);
    if (!cells.length) { box.replaceChildren(el("p", { class: "muted" }, "Select an interval.")); return; }
    const parts = [];
    if (cells.length === 1) {
      const c = cells[0];
      parts.push(el("dl", { class: "kv" },
        el("dt", {}, "interval"), el("dd", {}, `${fmtDate(c.start)} .. ${fmtDate(c.end)}`),
        el("dt", {}, "status"), el("dd", { "data-field": "status" }, c.status),
        el("dt", {}, "detail"), el("dd", {}, c.detail),
        el("dt", {}, "rows"), el("dd", {}, fmtInt(c.rows)),
        el("dt", {}, "loads"), el("dd", {}, c.attempts),
        el("dt", {}, "DAG run"), el("dd", {}, c.run_id ? uiLink(runUrl(d.dag_id, c.run_id), c.run_id) : "none",
          c.run_state ? ` (${c.run_state})` : ""),
        el("dt", {}, "task log"), el("dd", {}, c.run_id && (c.task_id || d.task_id)
          ? uiLink(logUrl(d.dag_id, c.run_id, c.task_id || d.task_id), c.task_id || d.task_id) : "-")));
    } else {
      const n = (s) => cells.filter((c) => c.status === s).length;
      parts.push(el("p", {}, `${cells.length} intervals ${fmtDate(cells[0].start)} .. ${fmtDate(cells[cells.length - 1].end)}: `,
        `${n("missing")} missing, ${n("failed")} failed, ${n("rejected")} rejected, ${n("published")} published`));
    }
    const plan = fillPlan(cells);
    if (plan) parts.push(el("button", { class: "primary", id: "fill", onclick: () => runPlan(plan) }, plan.label));
    box.replaceChildren(...parts);
  }

  // A failed or rejected interval whose DAG run exists: clear that run. Anything else with holes: one backfill
  // over the selected range (reprocess "completed": an existing run of a hole is re-run too).
  function fillPlan(cells) {
    const holes = cells.filter((c) => c.status !== "published");
    if (!holes.length || cells.some((c) => c.active)) return null;
    const d = state.detail;
    if (cells.length === 1 && holes[0].status !== "missing" && holes[0].run_id) {
      return { kind: "clear", dag_id: d.dag_id, run_id: holes[0].run_id, cells, label: "Clear and re-run this run" };
    }
    return {
      kind: "backfill", dag_id: d.dag_id, from_date: holes[0].logical_date, to_date: holes[holes.length - 1].logical_date,
      cells, label: cells.length === 1 ? "Backfill this interval" : `Backfill ${holes.length} interval(s)`,
    };
  }

  async function runPlan(plan) {
    const button = $("#fill"); if (button) button.disabled = true;
    const action = { plan, started: new Date(), text: "", done: false, error: null, total: plan.cells.length, finished: 0 };
    state.actions.unshift(action);
    try {
      if (plan.kind === "clear") {
        // Done is when the run is final again with another end date than before the clear.
        action.previous_end = (await rest("GET", `dags/${enc(plan.dag_id)}/dagRuns/${enc(plan.run_id)}`)).end_date;
        await rest("POST", `dags/${enc(plan.dag_id)}/clearTaskInstances`,
          { dry_run: false, dag_run_id: plan.run_id, only_failed: false, reset_dag_runs: true });
        action.text = `Cleared run ${plan.run_id}`;
      } else {
        const b = await rest("POST", "backfills", {
          dag_id: plan.dag_id, from_date: plan.from_date, to_date: plan.to_date,
          reprocess_behavior: "completed", max_active_runs: 4, run_backwards: false,
        });
        action.backfill_id = b.id;
        action.text = `Backfill ${b.id}: ${fmtDate(plan.from_date)} .. ${fmtDate(plan.to_date)}`;
      }
    } catch (e) {
      action.error = e.message; action.done = true;
    }
    renderActions();
    schedulePoll(500);
  }

  function schedulePoll(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(poll, ms);
  }

  async function poll() {
    const open = state.actions.filter((a) => !a.done);
    for (const a of open) {
      try { await progress(a); } catch (e) { a.error = e.message; a.done = true; }
    }
    try {
      if (state.current) await loadDetail();
      await loadOverview();
    } catch (e) { setStatus(`refresh failed: ${e.message}`); }
    renderActions();
    if (state.actions.some((a) => !a.done)) schedulePoll(2000);
  }

  async function progress(a) {
    const p = a.plan;
    const first = p.cells[0].logical_date, last = p.cells[p.cells.length - 1].logical_date;
    let runs;
    if (p.kind === "clear") {
      runs = [await rest("GET", `dags/${enc(p.dag_id)}/dagRuns/${enc(p.run_id)}`)];
    } else {
      const q = new URLSearchParams({ logical_date_gte: first, logical_date_lte: last, limit: "1000" });
      runs = (await rest("GET", `dags/${enc(p.dag_id)}/dagRuns?${q}`)).dag_runs;
    }
    a.finished = runs.filter((r) => FINAL_RUN_STATES.has(r.state)).length;
    a.failed = runs.filter((r) => r.state === "failed").length;
    a.total = Math.max(p.kind === "clear" ? 1 : p.cells.length, runs.length);
    let backfillDone = true;
    if (a.backfill_id !== undefined) backfillDone = Boolean((await rest("GET", `backfills/${a.backfill_id}`)).completed_at);
    const cleared = p.kind !== "clear" || runs[0].end_date !== a.previous_end;
    a.done = backfillDone && cleared && a.finished >= a.total && runs.length > 0;
  }

  function renderActions() {
    const list = $("#actions");
    if (!state.actions.length) return;
    list.replaceChildren(...state.actions.map((a) => el("li", { "data-done": a.done ? "true" : "false" },
      a.text || a.plan.label, " ",
      a.error ? el("span", { class: "fail" }, a.error)
        : [el("progress", { max: a.total, value: a.finished }), ` ${a.finished}/${a.total} runs finished`,
          a.failed ? el("span", { class: "fail" }, ` (${a.failed} failed)`) : null, a.done ? " · done" : " · running"])));
  }

  // ---- rows chart (hand-drawn SVG) -------------------------------------------------------------------------
  // The chart is one SVG string (up to 1,000 dots with their tooltips): one parse instead of 2,000 nodes built
  // one by one.
  // A check's accepted range: "1..500", "\u2265 1" (a minimum only), "\u2264 500" (a maximum only).
  function fmtBounds(lo, hi) {
    const has = (v) => v !== null && v !== undefined;
    if (has(lo) && has(hi)) return `${fmtInt(lo)}..${fmtInt(hi)}`;
    if (has(lo)) return `\u2265 ${fmtInt(lo)}`;
    return has(hi) ? `\u2264 ${fmtInt(hi)}` : "any";
  }

  function renderChart(d) {
    const box = $("#chart"), cells = d.cells, out = [];
    const add = (tag, attrs, inner) => out.push(`<${tag} ${Object.entries(attrs).map(([k, v]) => `${k}="${esc(v)}"`).join(" ")}>` +
      `${inner === undefined ? "" : inner}</${tag}>`);
    const W = Math.max(600, Math.min(1400, box.clientWidth || 900)), H = 180, L = 56, R = 8, T = 8, B = 22;
    const vals = [];
    for (const c of cells) { if (c.rows !== null) vals.push(c.rows); if (c.band) vals.push(c.band[0], c.band[1]); }
    const rb = d.row_count_band;
    if (rb) for (const v of rb) if (v !== null) vals.push(v);
    const max = Math.max(1, ...vals) * 1.05;
    const n = Math.max(cells.length, 1), x = (i) => +(L + ((W - L - R) * (i + 0.5)) / n).toFixed(1),
      y = (v) => +(T + (H - T - B) * (1 - v / max)).toFixed(1);
    for (const f of [0, 0.5, 1]) {
      add("line", { x1: L, x2: W - R, y1: y(max * f / 1.05), y2: y(max * f / 1.05), stroke: "#e3e8ee" });
      add("text", { x: L - 4, y: y(max * f / 1.05) + 4, "text-anchor": "end" }, esc(fmtInt(Math.round(max * f / 1.05))));
    }
    // Drift band: the row range the drift check accepted for each load (a polygon over consecutive bands).
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        const [i, b] = run[0];
        add("rect", { x: x(i) - 2, width: 4, y: y(b[1]), height: Math.max(1, y(b[0]) - y(b[1])), fill: "#90caf9", opacity: 0.5 });
      } else if (run.length) {
        const pts = run.map(([i, b]) => `${x(i)},${y(b[1])}`).concat(run.slice().reverse().map(([i, b]) => `${x(i)},${y(b[0])}`));
        add("polygon", { points: pts.join(" "), fill: "#90caf9", opacity: 0.45, class: "drift-band" });
      }
      run = [];
    };
    cells.forEach((c, i) => (c.band ? run.push([i, c.band]) : flush())); flush();
    if (rb) for (const v of rb) if (v !== null) add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#5c6bc0", "stroke-dasharray": "4 3" });
    let path = "";
    cells.forEach((c, i) => { if (c.rows !== null && c.status === "published") path += `${path ? "L" : "M"}${x(i)},${y(c.rows)}`; });
    if (path) add("path", { d: path, fill: "none", stroke: "#455a64", "stroke-width": 1 });
    const r = n > 300 ? 1.5 : 3;
    cells.forEach((c, i) => {
      if (c.rows === null) return;
      add("circle", { cx: x(i), cy: y(c.rows), r, fill: COLORS[c.status], "data-rows": c.rows, "data-status": c.status },
        `<title>${esc(`${fmtDate(c.start)}: ${fmtInt(c.rows)} rows (${c.status})`)}</title>`);
    });
    add("text", { x: L, y: H - 6 }, esc(fmtDate(d.first_start)));
    add("text", { x: W - R, y: H - 6, "text-anchor": "end" }, esc(fmtDate(d.last_end)));
    box.innerHTML = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="rows per interval">${out.join("")}</svg>`;
    $("#band-note").textContent = (cells.some((c) => c.band) ? "blue band: rows the drift check accepted" : "no drift check results") +
      (rb ? ` · dashed: row_count ${fmtBounds(rb[0], rb[1])}` : "");
  }

  function renderFreshness(f) {
    $("#freshness").replaceChildren(el("dl", { class: "kv" },
      el("dt", {}, "status"), el("dd", {}, freshBadge(f)),
      el("dt", {}, "latest data"), el("dd", { "data-field": "latest" }, fmtDate(f.latest)),
      el("dt", {}, "loaded at"), el("dd", {}, fmtTime(f.loaded_at)),
      el("dt", {}, "lag"), el("dd", { "data-field": "lag" }, fmtDuration(f.lag_seconds)),
      el("dt", {}, "SLA"), el("dd", { "data-field": "sla" }, f.source === "sensor"
        ? [`warn after ${fmtDuration(f.warn_after_seconds)}, error after ${fmtDuration(f.error_after_seconds)} (sensor `,
          uiLink(dagUrl(f.sensor.dag_id), `${f.sensor.dag_id}.${f.sensor.task_id}`), ")"]
        : `no freshness sensor on this table: warn when ${f.warn_intervals} interval(s) ` +
          `(${fmtDuration(f.warn_after_seconds)}) unpublished, error from ${f.error_intervals} (${fmtDuration(f.error_after_seconds)})`)));
  }

  function renderChecks(d) {
    const rows = [];
    for (const load of d.checks) {
      const checks = load.checks.length ? load.checks : [{ check: "-", observed: null, threshold: null, passed: null }];
      checks.forEach((c, k) => rows.push(el("tr", {},
        k === 0 ? el("td", { rowspan: checks.length }, `${fmtDate(load.start)}`, el("br"), el("small", {}, `#${load.ledger_id} ${load.status}`)) : null,
        k === 0 ? el("td", { rowspan: checks.length }, fmtInt(load.rows)) : null,
        el("td", {}, c.check), el("td", {}, c.observed === null || c.observed === undefined ? "-" : String(c.observed)),
        el("td", {}, c.threshold === null || c.threshold === undefined ? "-" : String(c.threshold)),
        el("td", { class: c.passed === false ? "fail" : "pass" }, c.passed === null ? "" : c.passed ? "pass" : "FAIL"),
        el("td", {}, c.detail || (k === 0 && load.error ? load.error : "")))));
    }
    $("#checks").replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, ["Interval", "Rows", "Check", "Observed", "Threshold", "", "Detail"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
  }

  // ---- dbt docs ---------------------------------------------------------------------------------------------
  // Loaded after the overview is on screen. A target whose table is a dbt source or model gets a link to its
  // page in the docs; every site gets a row with a link per model.
  async function loadDbt() {
    const data = await getJSON(new URL("dbt", API));
    state.dbt = data.sites;
    state.dbtByRelation = new Map();
    for (const site of data.sites) for (const node of site.nodes) {
      if (!state.dbtByRelation.has(node.relation)) state.dbtByRelation.set(node.relation, node);
    }
    renderDbt();
    if (state.overview && state.dbtByRelation.size) renderTargets();
  }

  function dbtLinks(t) {
    const node = state.dbtByRelation && state.dbtByRelation.get(`${t.schema}.${t.table}`);
    return node ? ` <a class="dbt-link" href="${esc(node.url)}" target="_blank" rel="noopener" ` +
      `title="dbt docs: ${esc(node.unique_id)}">dbt docs</a>` : "";
  }

  function renderDbt() {
    const box = $("#dbt"), sites = state.dbt || [];
    box.hidden = !sites.length;
    if (!sites.length) return;
    const kinds = ["model", "seed", "snapshot", "source"];
    box.innerHTML = `<div class="panel"><h3>dbt docs</h3><table><thead><tr><th>Pipeline</th><th>Docs</th><th>Nodes</th></tr></thead><tbody>` +
      sites.map((site) => `<tr data-dbt-site="${esc(site.id)}"><td>${site.dag_id ? esc(site.dag_id) : '<span class="muted">build</span>'}` +
        `${site.task_id ? ` <small>${esc(site.task_id)}</small>` : ""}</td>` +
        `<td><a href="${esc(site.url)}" target="_blank" rel="noopener">${esc(site.id)}</a></td><td class="dbt-nodes">` +
        kinds.map((kind) => {
          const nodes = site.nodes.filter((n) => n.kind === kind);
          return nodes.length ? `<div><small>${kind}s:</small> ` + nodes.map((n) =>
            `<a href="${esc(n.url)}" target="_blank" rel="noopener" data-node="${esc(n.unique_id)}" title="${esc(`${n.unique_id} (${n.relation})`)}">${esc(n.name)}</a>`).join(" · ") + "</div>" : "";
        }).join("") + "</td></tr>").join("") + "</tbody></table></div>";
  }

  // ---- failover ---------------------------------------------------------------------------------------------
  async function loadFormation() {
    const f = await getJSON(new URL("formation", API));
    const box = $("#formation");
    if (!f.configured) { box.hidden = true; return; }
    box.hidden = false;
    if (f.error) { box.replaceChildren(el("h3", {}, `Formation ${f.formation}`), el("p", { class: "fail" }, f.error)); return; }
    box.replaceChildren(el("div", { class: "panel" }, el("h3", {}, `Failover formation "${f.formation}"`),
      el("table", {}, el("thead", {}, el("tr", {}, ["Node", "Address", "State", "Goal", "Health", "LSN", "Lag behind primary"].map((h) => el("th", {}, h)))),
        el("tbody", {}, f.nodes.map((n) => el("tr", {},
          el("td", {}, n.name), el("td", {}, n.address), el("td", {}, n.reported_state),
          el("td", { class: n.settled ? "" : "fail" }, n.goal_state), el("td", { class: n.health === "good" ? "pass" : "fail" }, n.health),
          el("td", {}, n.reported_lsn), el("td", {}, `${fmtInt(n.lag_bytes)} bytes`)))))));
  }

  async function start() {
    $("#filter").addEventListener("input", () => state.overview && renderTargets());
    $("#targets tbody").addEventListener("click", onTargetsClick);
    $("#calendar").addEventListener("click", onCalendarClick);
    setStatus("loading…");
    try {
      const data = await loadOverview(true);
      const want = new URLSearchParams(location.search).get("target");
      const first = data.targets.find((t) => t.id === want);
      if (first) await openTarget(first);
    } catch (e) {
      setStatus(`failed: ${e.message}`);
      $("#errors").replaceChildren(el("p", {}, e.message));
    }
    loadFormation().catch((e) => { $("#formation").hidden = false; $("#formation").textContent = `formation: ${e.message}`; });
    loadDbt().catch((e) => { $("#dbt").hidden = false; $("#dbt").textContent = `dbt docs: ${e.message}`; })
      .finally(() => { document.body.dataset.dbtReady = "true"; });
    document.body.dataset.ready = "true";
    if (window.performance && performance.mark) performance.mark("dataeng-ready");
  }
  start();
})();
