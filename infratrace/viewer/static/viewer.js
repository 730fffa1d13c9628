/* infratrace viewer: the trace list, the waterfall and the span details.
 *
 * Data comes from the page itself (an exported file: <script id="infratrace-data">)
 * or from the server's API (/api/traces, /api/traces/<id>), asked again every
 * POLL_MS for spans written since. Every text from a trace is set with textContent,
 * never as HTML: span names and attributes come from requests.
 */
"use strict";
(function () {
  const POLL_MS = 1500;
  const MIN_RANGE_MS = 0.001;
  const INDENT_PX = 14;

  const $ = (id) => document.getElementById(id);
  const embedded = JSON.parse($("infratrace-data").textContent || "null");

  const state = {
    generation: null,
    traces: [], // summaries, newest first (served: those matching the search, as the server found them)
    total: 0, // traces in all
    matched: 0, // traces matching the search
    selectedId: null,
    detail: null, // the selected trace, with its spans
    view: null, // the visible time range: { from, to } in ms from the trace's start
    selectedSpan: null,
    collapsed: new Set(),
    pendingSpan: null, // from the URL: selected once its trace is loaded
  };

  // -- helpers ------------------------------------------------------------------------
  function formatMs(ms) {
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    if (ms >= 100) return ms.toFixed(1) + " ms";
    if (ms >= 10) return ms.toFixed(2) + " ms";
    return ms.toFixed(3) + " ms";
  }

  function formatTick(ms, step) {
    if (step >= 1000) return +(ms / 1000).toFixed(3) + " s";
    if (step >= 1) return +ms.toFixed(1) + " ms";
    return +(ms * 1000).toFixed(1) + " µs";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function valueText(value) {
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  async function fetchJson(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  function setNotes(notes) {
    const node = $("notes");
    node.textContent = notes.join(" · ");
    node.hidden = notes.length === 0;
  }

  // -- the trace list ---------------------------------------------------------------------
  function searchTerms() {
    return $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
  }

  function matches(summary, terms, status) {
    if (status && summary.status !== status) return false;
    if (!terms.length) return true;
    const haystack = [summary.trace_id, summary.name, summary.service]
      .concat(summary.services, summary.names)
      .join("\n")
      .toLowerCase();
    return terms.every((term) => haystack.includes(term));
  }

  function renderList() {
    const list = $("traces");
    // An exported page searches its own traces; a served one shows what the server found.
    const shown = embedded ? state.traces.filter((t) => matches(t, searchTerms(), $("status-filter").value)) : state.traces;
    const matched = embedded ? shown.length : state.matched;
    list.replaceChildren(
      ...shown.map((t) => {
        const item = el("li", "trace-item" + (t.status === "error" ? " error" : "") + (t.trace_id === state.selectedId ? " selected" : ""));
        item.dataset.traceId = t.trace_id;
        item.append(el("span", "dot"), el("span", "name", t.name || "(no name)"), el("span", "duration", formatMs(t.duration_ms)));
        const errors = t.errors ? " · " + t.errors + (t.errors === 1 ? " error" : " errors") : "";
        item.append(el("span", "sub", t.services.join(", ") + " · " + t.spans + (t.spans === 1 ? " span" : " spans") + errors + " · " + t.time));
        item.title = t.trace_id;
        item.addEventListener("click", () => selectTrace(t.trace_id));
        return item;
      })
    );
    const total = embedded ? state.traces.length : state.total;
    $("count").textContent =
      matched > shown.length
        ? "the newest " + shown.length + " of " + matched + " matching traces (" + total + " in all)"
        : matched + " of " + total + " traces";
  }

  function applyTraces(data) {
    state.generation = data.generation;
    state.traces = data.traces;
    state.total = data.total === undefined ? data.traces.length : data.total;
    state.matched = data.matched === undefined ? data.traces.length : data.matched;
    const files = data.files || [];
    $("source").textContent = files.length ? files.join(", ") : "";
    $("source").title = files.join("\n");
    setNotes(data.notes || []);
    renderList();
  }

  function listQuery() {
    return "q=" + encodeURIComponent($("search").value) + "&status=" + encodeURIComponent($("status-filter").value);
  }

  async function poll() {
    try {
      const query = listQuery();
      const known = state.generation === null ? "" : String(state.generation);
      const data = await fetchJson("api/traces?" + query + "&known=" + encodeURIComponent(known));
      $("live").hidden = false;
      if (data.unchanged || query !== listQuery()) return; // the search changed meanwhile: its own answer follows
      const before = state.traces.find((t) => t.trace_id === state.selectedId);
      applyTraces(data);
      const after = state.traces.find((t) => t.trace_id === state.selectedId);
      if (after && (!before || before.spans !== after.spans || before.duration_ms !== after.duration_ms || before.errors !== after.errors)) {
        await loadTrace(state.selectedId, true);
      }
    } catch (error) {
      $("live").hidden = true;
      setNotes(["cannot reach the server: " + error.message]);
    }
  }

  // -- selecting a trace -----------------------------------------------------------------------
  async function loadTrace(traceId, keepView) {
    const detail = embedded ? embedded.details[traceId] : await fetchJson("api/traces/" + encodeURIComponent(traceId));
    if (!detail || traceId !== state.selectedId) return;
    const extent = Math.max(detail.duration_ms, MIN_RANGE_MS);
    state.detail = detail;
    if (!keepView || !state.view) state.view = { from: 0, to: extent };
    if (state.selectedSpan) state.selectedSpan = detail.spans.find((s) => s.span_id === state.selectedSpan.span_id) || null;
    if (state.pendingSpan) {
      state.selectedSpan = detail.spans.find((s) => s.span_id === state.pendingSpan) || null;
      state.pendingSpan = null;
    }
    renderTrace();
    renderDetails();
  }

  async function selectTrace(traceId) {
    if (state.selectedId !== traceId) {
      state.selectedId = traceId;
      state.selectedSpan = null;
      state.collapsed = new Set();
      state.view = null;
    }
    writeHash();
    renderList();
    try {
      await loadTrace(traceId, false);
    } catch (error) {
      setNotes(["cannot load trace " + traceId + ": " + error.message]);
    }
  }

  function writeHash() {
    let hash = state.selectedId ? "#trace=" + state.selectedId : "";
    if (state.selectedId && state.selectedSpan) hash += "&span=" + state.selectedSpan.span_id;
    if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    return { trace: params.get("trace"), span: params.get("span") };
  }

  // -- the waterfall ------------------------------------------------------------------------------
  function visibleSpans() {
    const out = [];
    let hiddenBelow = null; // depth of a collapsed span whose subtree is being skipped
    for (const span of state.detail.spans) {
      if (hiddenBelow !== null) {
        if (span.depth > hiddenBelow) continue;
        hiddenBelow = null;
      }
      out.push(span);
      if (state.collapsed.has(span.span_id)) hiddenBelow = span.depth;
    }
    return out;
  }

  function renderTrace() {
    const detail = state.detail;
    $("empty").hidden = true;
    $("trace").hidden = false;
    $("trace-name").textContent = detail.name || "(no name)";
    const meta = $("trace-meta");
    meta.replaceChildren();
    meta.append(el("code", "", detail.trace_id), " · " + formatMs(detail.duration_ms) + " · " + detail.span_count + " spans");
    if (detail.errors) meta.append(" · ", el("span", "error", detail.errors + (detail.errors === 1 ? " error" : " errors")));
    meta.append(" · " + detail.services.join(", ") + " · " + detail.time);
    if (detail.orphan_root) meta.append(" · its root is not in these files");
    renderWaterfall();
  }

  function renderWaterfall() {
    const view = state.view;
    const range = view.to - view.from;
    renderAxis(view, range);
    const rows = visibleSpans().map((span) => {
      const row = el("div", "row span-row" + (span.status === "error" ? " error" : span.slow ? " slow" : ""));
      if (state.selectedSpan && state.selectedSpan.span_id === span.span_id) row.classList.add("selected");
      row.dataset.spanId = span.span_id;
      const name = el("div", "name-col");
      name.style.paddingLeft = 8 + span.depth * INDENT_PX + "px";
      const toggle = el("span", "toggle", span.children ? (state.collapsed.has(span.span_id) ? "▸" : "▾") : "");
      if (span.children) {
        toggle.title = "fold or unfold its " + span.children + (span.children === 1 ? " child" : " children");
        toggle.addEventListener("click", (event) => {
          event.stopPropagation();
          if (state.collapsed.has(span.span_id)) state.collapsed.delete(span.span_id);
          else state.collapsed.add(span.span_id);
          renderWaterfall();
        });
      }
      const mark = el("span", "mark", span.status === "error" ? "✗" : span.slow ? "▲" : "");
      name.append(toggle, mark, el("span", "span-name", span.name));
      if (span.kind !== "internal") name.append(el("span", "kind", span.kind));
      if (span.http_status !== null && span.http_status !== undefined) name.append(el("span", "kind", span.http_status));
      name.append(el("span", "service", span.service + (span.pid ? " " + span.pid : "")));
      name.title = span.name + (span.orphan ? " (its parent is not in these files)" : "");
      const duration = el("div", "dur-col", formatMs(span.duration_ms));
      const timeline = el("div", "timeline");
      const start = span.offset_ms;
      const end = span.offset_ms + span.width_ms;
      const left = ((start - view.from) / range) * 100;
      const right = ((end - view.from) / range) * 100;
      if (right >= 0 && left <= 100) {
        const bar = el("div", "bar");
        const clippedLeft = Math.max(0, left);
        const clippedRight = Math.min(100, right);
        bar.style.left = "min(" + clippedLeft + "%, calc(100% - 1px))"; // a span ending the trace stays in view
        bar.style.width = Math.max(0, clippedRight - clippedLeft) + "%";
        if (left < 0) bar.classList.add("clipped-left");
        if (right > 100) bar.classList.add("clipped-right");
        bar.title = span.name + ": " + formatMs(span.duration_ms) + " at +" + formatMs(span.offset_ms);
        timeline.append(bar);
      }
      for (const event of span.events) {
        if (event.offset_ms === null) continue;
        const at = ((event.offset_ms - view.from) / range) * 100;
        if (at < 0 || at > 100) continue;
        const tick = el("div", "event-tick");
        tick.style.left = at + "%";
        tick.title = event.name + " at +" + formatMs(event.offset_ms);
        timeline.append(tick);
      }
      row.append(name, duration, timeline);
      row.addEventListener("click", () => selectSpan(span));
      row.addEventListener("dblclick", () => zoomTo(span.offset_ms, span.offset_ms + span.width_ms, 0.05));
      return row;
    });
    $("rows").replaceChildren(...rows);
    const whole = state.detail.duration_ms;
    $("zoom-range").textContent =
      view.from <= 0 && view.to >= whole ? "" : "+" + formatMs(view.from) + " … +" + formatMs(view.to) + " of " + formatMs(whole);
  }

  function renderAxis(view, range) {
    const axis = $("axis");
    const step = niceStep(range / 6);
    const ticks = [];
    for (let t = Math.ceil(view.from / step) * step; t <= view.to + step * 1e-9; t += step) {
      const tick = el("div", "tick", formatTick(t, step));
      tick.style.left = ((t - view.from) / range) * 100 + "%";
      ticks.push(tick);
      if (ticks.length > 50) break;
    }
    axis.replaceChildren(...ticks);
  }

  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const factor of [1, 2, 5, 10]) if (raw <= factor * power) return factor * power;
    return 10 * power;
  }

  // -- zoom ------------------------------------------------------------------------------------------
  function zoomTo(from, to, margin) {
    const whole = Math.max(state.detail.duration_ms, MIN_RANGE_MS);
    let lo = Math.min(from, to);
    let hi = Math.max(from, to);
    const pad = (hi - lo) * (margin || 0);
    lo -= pad;
    hi += pad;
    if (hi - lo < MIN_RANGE_MS) {
      const mid = (lo + hi) / 2;
      lo = mid - MIN_RANGE_MS / 2;
      hi = mid + MIN_RANGE_MS / 2;
    }
    lo = Math.max(0, lo);
    hi = Math.min(whole, hi);
    if (hi <= lo) return;
    state.view = { from: lo, to: hi };
    renderWaterfall();
  }

  function zoomBy(factor, center) {
    if (!state.view) return;
    const { from, to } = state.view;
    const mid = center === undefined ? (from + to) / 2 : center;
    zoomTo(mid - (mid - from) * factor, mid + (to - mid) * factor, 0);
  }

  function resetZoom() {
    if (!state.detail) return;
    state.view = { from: 0, to: Math.max(state.detail.duration_ms, MIN_RANGE_MS) };
    renderWaterfall();
  }

  function timeAt(clientX) {
    const rect = $("axis").getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (clientX - rect.left) / rect.width));
    return state.view.from + fraction * (state.view.to - state.view.from);
  }

  function installZoom() {
    const waterfall = $("waterfall");
    const selection = $("selection");
    let dragStart = null;
    let dragged = false;
    waterfall.addEventListener("mousedown", (event) => {
      if (!state.detail || event.button !== 0 || !event.target.closest(".timeline")) return;
      dragStart = event.clientX;
      dragged = false;
    });
    window.addEventListener("mousemove", (event) => {
      if (dragStart === null) return;
      if (Math.abs(event.clientX - dragStart) < 4 && !dragged) return;
      dragged = true;
      const box = waterfall.getBoundingClientRect();
      const axis = $("axis").getBoundingClientRect();
      const a = Math.max(axis.left, Math.min(axis.right, dragStart));
      const b = Math.max(axis.left, Math.min(axis.right, event.clientX));
      selection.style.left = Math.min(a, b) - box.left + "px";
      selection.style.width = Math.abs(b - a) + "px";
      selection.hidden = false;
    });
    window.addEventListener("mouseup", (event) => {
      if (dragStart === null) return;
      const start = dragStart;
      dragStart = null;
      selection.hidden = true;
      if (dragged) zoomTo(timeAt(start), timeAt(event.clientX), 0);
    });
    // A drag ends in a click on the row under the pointer: not a selection.
    waterfall.addEventListener(
      "click",
      (event) => {
        if (dragged) {
          event.stopPropagation();
          dragged = false;
        }
      },
      true
    );
    waterfall.addEventListener(
      "wheel",
      (event) => {
        if (!state.detail || !(event.ctrlKey || event.metaKey || event.target.closest(".axis"))) return;
        event.preventDefault();
        zoomBy(event.deltaY < 0 ? 0.8 : 1.25, timeAt(event.clientX));
      },
      { passive: false }
    );
    $("zoom-in").addEventListener("click", () => zoomBy(0.5));
    $("zoom-out").addEventListener("click", () => zoomBy(2));
    $("zoom-reset").addEventListener("click", resetZoom);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && document.activeElement !== $("search")) resetZoom();
    });
  }

  // -- span details -------------------------------------------------------------------------------------
  function selectSpan(span) {
    state.selectedSpan = span;
    writeHash();
    for (const row of $("rows").children) row.classList.toggle("selected", row.dataset.spanId === span.span_id);
    renderDetails();
  }

  function table(rows) {
    const node = el("table");
    for (const [key, value] of rows) {
      const tr = el("tr");
      tr.append(el("td", "", key), el("td", "", valueText(value)));
      node.append(tr);
    }
    return node;
  }

  function renderDetails() {
    const pane = $("details");
    const span = state.selectedSpan;
    if (!span) {
      pane.hidden = true;
      return;
    }
    pane.hidden = false;
    $("details-name").textContent = span.name;
    const body = $("details-body");
    body.replaceChildren();
    const status = el("p", span.status === "error" ? "status-error" : "");
    status.textContent =
      span.status === "error" ? "error" + (span.status_message ? ": " + span.status_message : "") : "ok";
    body.append(status);
    body.append(
      table([
        ["kind", span.kind],
        ["service", span.service],
        ["process", (span.node ? span.node + " " : "") + (span.pid ? "pid " + span.pid : "")],
        ["start", "+" + formatMs(span.offset_ms)],
        ["duration", formatMs(span.duration_ms)],
        ["self time", formatMs(span.self_ms)],
        ["status code", span.status_code],
        ["span id", span.span_id],
        ["parent id", span.parent_id + (span.orphan ? " (not in these files)" : "")],
        ["read from", span.origin],
      ])
    );
    const attributes = Object.entries(span.attributes);
    if (attributes.length) body.append(el("h3", "", "attributes"), table(attributes));
    if (span.events.length) {
      body.append(el("h3", "", "events"));
      for (const event of span.events) {
        const box = el("div", "event");
        const at = event.offset_ms === null ? "" : " at +" + formatMs(event.offset_ms);
        box.append(el("strong", "", event.name + at));
        const attrs = Object.assign({}, event.attributes);
        const stack = attrs["exception.stacktrace"];
        delete attrs["exception.stacktrace"];
        const rest = Object.entries(attrs);
        if (rest.length) box.append(table(rest));
        if (stack) box.append(el("pre", "", stack));
        body.append(box);
      }
    }
    const resource = Object.entries(span.resource);
    if (resource.length) body.append(el("h3", "", "resource"), table(resource));
  }

  // -- start ------------------------------------------------------------------------------------------------
  function start() {
    let searching = null;
    const searchChanged = () => {
      if (embedded) return renderList();
      clearTimeout(searching);
      searching = setTimeout(() => {
        state.generation = null; // a new search: the whole answer, even if no span came
        poll();
      }, 120);
    };
    $("search").addEventListener("input", searchChanged);
    $("status-filter").addEventListener("change", searchChanged);
    $("details-close").addEventListener("click", () => {
      state.selectedSpan = null;
      writeHash();
      for (const row of $("rows").children) row.classList.remove("selected");
      renderDetails();
    });
    installZoom();
    window.addEventListener("hashchange", () => {
      const asked = readHash();
      if (asked.trace && asked.trace !== state.selectedId) {
        state.pendingSpan = asked.span;
        selectTrace(asked.trace);
      }
    });
    const wanted = readHash();
    state.pendingSpan = wanted.span;
    const afterFirst = () => {
      if (wanted.trace && state.traces.some((t) => t.trace_id === wanted.trace)) selectTrace(wanted.trace);
    };
    if (embedded) {
      applyTraces({ generation: 0, traces: embedded.traces, files: embedded.files, notes: [] });
      afterFirst();
      return;
    }
    poll().then(afterFirst);
    setInterval(poll, POLL_MS);
  }

  start();
})();
