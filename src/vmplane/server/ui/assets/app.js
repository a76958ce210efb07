// vmplane console: a small hand-written page over the API itself (no framework, no build step).
// Every read and write below is an ordinary Kubernetes API request made with the session cookie,
// so what a user may do, admission's verdicts and error messages are the API's own; the page only
// lists, watches (streamed fetch) and renders. DOM is built with textContent only: no HTML from data.
"use strict";

const KV = "/apis/kubevirt.io/v1";
const SUB = "/apis/subresources.kubevirt.io/v1";
const LIVE_ANNOTATION = "vmplane.io/dry-run-live-changes";
let session = null; // {user, csrf, canWrite, canConsole}
let view = null; // the current view's stop()

// ---- small helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function show(value) {
  if (value === undefined || value === null) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

class ApiError extends Error {
  constructor(message, code) { super(message); this.code = code; }
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(method, path, { body, contentType, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf;
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const response = await fetch(path, {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (_) { data = { message: text }; }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/ui/session")) signedOut();
    throw new ApiError(data.message || `${response.status} ${response.statusText}`, response.status);
  }
  return data;
}

function key(obj) { return `${obj.metadata.namespace}/${obj.metadata.name}`; }
function vmPath(ns, name) { return `${KV}/namespaces/${encodeURIComponent(ns)}/virtualmachines/${encodeURIComponent(name)}`; }
function subPath(ns, name, action) { return `${SUB}/namespaces/${encodeURIComponent(ns)}/virtualmachines/${encodeURIComponent(name)}/${action}`; }

function condition(obj, type) {
  return ((obj && obj.status && obj.status.conditions) || []).find((c) => c.type === type) || null;
}
function restartRequired(vm) { const c = condition(vm, "RestartRequired"); return !!c && c.status === "True"; }
function pendingOf(vm) { return (vm && vm.status && vm.status.pendingChanges) || []; }
function domainOf(vm) { return (((vm.spec || {}).template || {}).spec || {}).domain || {}; }
function desiredVcpus(vm) {
  const cpu = domainOf(vm).cpu || {};
  return (cpu.sockets || 1) * (cpu.cores || 1) * (cpu.threads || 1);
}
function runningVcpus(vmi) {
  const t = vmi && vmi.status && vmi.status.currentCPUTopology;
  return t ? (t.sockets || 1) * (t.cores || 1) * (t.threads || 1) : null;
}
function desiredMemory(vm) {
  const d = domainOf(vm);
  return (d.memory && d.memory.guest) || ((d.resources || {}).requests || {}).memory || null;
}
function runningMemory(vmi) { return (vmi && vmi.status && vmi.status.memory && vmi.status.memory.guestCurrent) || null; }

// ---- list + watch --------------------------------------------------------------------------

// A collection kept current: list, then watch from the list's resourceVersion; relist on any end.
class Collection {
  constructor(url, onChange) {
    this.url = url;
    this.onChange = onChange;
    this.items = new Map();
    this.abort = new AbortController();
    this.run();
  }
  stop() { this.abort.abort(); }
  async run() {
    while (!this.abort.signal.aborted) {
      try {
        const list = await api("GET", this.url, { signal: this.abort.signal });
        this.items = new Map((list.items || []).map((o) => [key(o), o]));
        this.onChange();
        await this.watch(list.metadata.resourceVersion);
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (err.code === 401) return;
        if (err.code !== undefined) showError(err.message);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  async watch(resourceVersion) {
    const sep = this.url.includes("?") ? "&" : "?";
    const url = `${this.url}${sep}watch=true&allowWatchBookmarks=true&resourceVersion=${resourceVersion}`;
    const response = await fetch(url, { signal: this.abort.signal, credentials: "same-origin" });
    if (!response.ok) throw new ApiError(`watch failed: ${response.status}`, response.status);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (!line) continue;
        const event = JSON.parse(line);
        if (event.type === "ERROR") return; // expired: relist
        if (event.type === "BOOKMARK") continue;
        if (event.type === "DELETED") this.items.delete(key(event.object));
        else this.items.set(key(event.object), event.object);
        this.onChange();
      }
    }
  }
}

// ---- YAML (emit only: the server parses what is sent back) ---------------------------------

const RESERVED = /^(true|false|yes|no|on|off|null|y|n|~)$/i;
function yamlString(s) {
  const plain = /^[A-Za-z_/][A-Za-z0-9_./-]*$/.test(s) || /^\d+(\.\d+)?[A-Za-z]+$/.test(s);
  return plain && !RESERVED.test(s) ? s : JSON.stringify(s);
}
function yamlInline(v) {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "[]";
  if (typeof v === "object") return "{}";
  if (typeof v === "string") return yamlString(v);
  return String(v);
}
function isBlock(v) { return v !== null && typeof v === "object" && Object.keys(v).length > 0; }
function yamlBlock(v, indent, out) {
  if (Array.isArray(v)) {
    for (const item of v) {
      if (isBlock(item)) {
        const sub = [];
        yamlBlock(item, indent + "  ", sub);
        sub[0] = `${indent}- ${sub[0].slice(indent.length + 2)}`;
        out.push(...sub);
      } else out.push(`${indent}- ${yamlInline(item)}`);
    }
    return;
  }
  for (const [k, val] of Object.entries(v)) {
    if (isBlock(val)) {
      out.push(`${indent}${yamlString(k)}:`);
      yamlBlock(val, Array.isArray(val) ? indent : indent + "  ", out);
    } else out.push(`${indent}${yamlString(k)}: ${yamlInline(val)}`);
  }
}
function toYaml(v) { const out = []; yamlBlock(v, "", out); return out.join("\n") + "\n"; }

function editable(vm) {
  const m = vm.metadata;
  const metadata = { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion };
  if (m.labels) metadata.labels = m.labels;
  if (m.annotations) metadata.annotations = m.annotations;
  return { apiVersion: vm.apiVersion, kind: vm.kind, metadata, spec: vm.spec };
}

// ---- confirmation ------------------------------------------------------------------------------

function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "no";
    dialog.showModal();
    document.getElementById("confirm-yes").focus();
  });
}

// ---- views -----------------------------------------------------------------------------------

function signInView(main) {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const message = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "sign-in", onsubmit: async (e) => {
    e.preventDefault();
    try {
      session = await api("POST", "/ui/session", { body: { token: input.value } });
      input.value = "";
      signedIn();
    } catch (err) { message.textContent = err.message; message.hidden = false; }
  } },
  h("h2", { text: "Sign in" }),
  h("label", { for: "token", text: "API token" }), input,
  h("p", { id: "token-help", class: "muted", text: "Any vmplane identity's token: `vmplane kubeconfig` or `vmplane token create` prints one." }),
  message,
  h("button", { class: "primary", type: "submit", id: "sign-in", text: "Sign in" }));
  main.replaceChildren(form);
  input.focus();
  return () => {};
}

function fleetView(main) {
  let onlyPending = false;
  const banner = h("div", { id: "banner", class: "banner", role: "status", hidden: true });
  const body = h("tbody", { id: "fleet" });
  const table = h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {},
      ["Namespace", "Name", "Status", "Node", "vCPUs (running / desired)", "Memory (running / desired)", "Pending"]
        .map((t, i) => h("th", { scope: "col", class: i === 3 ? "hide-narrow" : null, text: t })))),
    body));
  const empty = h("p", { class: "muted", text: "No VMs yet." });
  const strategy = h("p", { id: "strategy" });
  main.replaceChildren(h("h2", { text: "Virtual machines" }), strategy, banner, table, empty);

  // The cluster's vmRolloutStrategy (the KubeVirt object): whether changes go live or wait.
  const renderStrategy = () => {
    const kv = [...kubevirts.items.values()][0];
    if (!kv) { strategy.replaceChildren(); return; }
    const current = ((kv.spec || {}).configuration || {}).vmRolloutStrategy || "Stage";
    const other = current === "LiveUpdate" ? "Stage" : "LiveUpdate";
    const explain = current === "LiveUpdate" ? "what can reach a running guest goes live; the rest waits for a restart"
      : "every change waits for a restart";
    const switchTo = async () => {
      if (!(await confirmAction(`Switch the rollout strategy of every VM to ${other}?`))) return;
      try {
        await api("PATCH", `${KV}/namespaces/${encodeURIComponent(kv.metadata.namespace)}/kubevirts/${encodeURIComponent(kv.metadata.name)}`,
          { body: { spec: { configuration: { vmRolloutStrategy: other } } }, contentType: "application/merge-patch+json" });
      } catch (err) { showError(err.message); }
    };
    strategy.replaceChildren("Rollout strategy: ", h("strong", { id: "strategy-name", text: current }), ` (${explain}) `,
      ...(session.canWrite ? [h("button", { type: "button", id: "strategy-switch", onclick: switchTo, text: `Switch to ${other}` })] : []));
  };
  const kubevirts = new Collection(`${KV}/kubevirts`, renderStrategy);

  const render = () => {
    const vms = [...vmsList.items.values()].sort((a, b) => key(a).localeCompare(key(b)));
    const waiting = vms.filter(restartRequired);
    banner.hidden = waiting.length === 0;
    const label = waiting.length === 1 ? "1 VM is pending restart" : `${waiting.length} VMs are pending restart`;
    banner.replaceChildren(h("strong", { text: label }),
      h("button", { id: "banner-filter", type: "button", "aria-pressed": String(onlyPending),
        onclick: () => { onlyPending = !onlyPending; render(); },
        text: onlyPending ? "Show all VMs" : "Show only them" }));
    if (waiting.length === 0) onlyPending = false;
    const shown = onlyPending ? waiting : vms;
    empty.hidden = vms.length > 0;
    body.replaceChildren(...shown.map((vm) => {
      const vmi = vmisList.items.get(key(vm));
      const ns = vm.metadata.namespace, name = vm.metadata.name;
      const cpus = [runningVcpus(vmi), desiredVcpus(vm)];
      const mem = [runningMemory(vmi), desiredMemory(vm)];
      const pair = (running, desired) => {
        const differs = running !== null && String(running) !== String(desired);
        return [show(running), " / ", h("span", { class: differs ? "desired" : null, text: show(desired) })];
      };
      const pending = pendingOf(vm).length;
      return h("tr", { "data-vm": key(vm) },
        h("td", { text: ns }),
        h("td", {}, h("a", { href: `#/vm/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`, text: name })),
        h("td", { class: "status", text: (vm.status && vm.status.printableStatus) || "—" }),
        h("td", { class: "node hide-narrow", text: (vmi && vmi.status && vmi.status.nodeName) || "—" }),
        h("td", { class: "num vcpus" }, pair(...cpus)),
        h("td", { class: "num memory" }, pair(...mem)),
        h("td", { class: pending ? "num pending changed" : "num pending", text: String(pending) }));
    }));
  };
  const vmsList = new Collection(`${KV}/virtualmachines`, render);
  const vmisList = new Collection(`${KV}/virtualmachineinstances`, render);
  return () => { vmsList.stop(); vmisList.stop(); kubevirts.stop(); };
}

function changesTable(rows, columns, id) {
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows)));
}

function vmView(main, ns, name) {
  let action = null; // {verb, before}: a start/stop/restart in progress
  const title = h("h2", {}, `${ns}/${name}`);
  const state = h("p", { id: "vm-state" });
  const progress = h("p", { id: "progress", class: "progress", role: "status", "aria-live": "polite" });
  const required = h("div", { id: "restart-required", class: "alert", role: "status", hidden: true });
  const pendingBox = h("div", { id: "pending" });
  const editor = h("section", { id: "editor", hidden: true });
  const events = h("tbody", { id: "events" });
  const consoleOut = h("pre", { id: "console", class: "console", tabindex: "0", "aria-label": "serial console" });
  const actions = h("div", { class: "actions" });

  const run = async (verb, text) => {
    if (!(await confirmAction(text))) return;
    showError("");
    const vmi = vmisList.items.get(`${ns}/${name}`);
    try {
      await api("PUT", subPath(ns, name, verb));
      action = { verb, before: vmi ? vmi.metadata.uid : null };
      progress.textContent = `${verb}: requested…`;
    } catch (err) { showError(err.message); }
  };
  const revert = async (paths) => {
    const text = paths ? `Revert ${paths[0]} to its running value?` : "Revert every pending change to its running value?";
    if (!(await confirmAction(text))) return;
    showError("");
    try {
      await api("PUT", subPath(ns, name, "revert"), paths ? { body: { paths } } : {});
      progress.textContent = paths ? `Reverted ${paths[0]}.` : "Reverted every pending change.";
    } catch (err) { showError(err.message); }
  };
  if (session.canWrite) {
    actions.append(
      h("button", { type: "button", id: "start", onclick: () => run("start", `Start ${name}?`), text: "Start" }),
      h("button", { type: "button", id: "stop", onclick: () => run("stop", `Stop ${name}? Its guest is shut down.`), text: "Stop" }),
      h("button", { type: "button", id: "restart", onclick: () => run("restart", `Restart ${name}? A new guest boots and every pending change applies.`), text: "Restart" }),
      h("button", { type: "button", id: "edit", onclick: () => openEditor(), text: "Edit YAML" }));
  }

  const openEditor = () => {
    const vm = vmsList.items.get(`${ns}/${name}`);
    if (!vm) return;
    const text = h("textarea", { id: "yaml", "aria-label": "VM manifest (YAML)", spellcheck: "false" });
    text.value = toYaml(editable(vm));
    const verdict = h("div", { id: "verdict", class: "verdict", role: "status", "aria-live": "polite" });
    const save = h("button", { type: "button", id: "save", class: "primary", disabled: true, text: "Save" });
    const send = (dryRun) => api("PUT", vmPath(ns, name) + (dryRun ? "?dryRun=All&fieldValidation=Strict" : "?fieldValidation=Strict"),
      { body: text.value, contentType: "application/yaml" });
    text.addEventListener("input", () => { save.disabled = true; });
    const preview = async () => {
      showError("");
      try {
        const projected = await send(true);
        renderVerdict(verdict, projected);
        save.disabled = false;
      } catch (err) { verdict.replaceChildren(h("p", { class: "error", text: err.message })); }
    };
    save.addEventListener("click", async () => {
      try { await send(false); closeEditor(); progress.textContent = "Saved."; }
      catch (err) { verdict.replaceChildren(h("p", { class: "error", text: err.message })); save.disabled = true; }
    });
    const closeEditor = () => { editor.hidden = true; editor.replaceChildren(); };
    editor.replaceChildren(h("h3", { text: "Edit" }), text,
      h("div", { class: "actions" },
        h("button", { type: "button", id: "preview", onclick: preview, text: "Preview" }), save,
        h("button", { type: "button", id: "cancel", onclick: closeEditor, text: "Cancel" })),
      verdict);
    editor.hidden = false;
    text.focus();
  };

  const renderVerdict = (box, projected) => {
    const live = JSON.parse(((projected.metadata || {}).annotations || {})[LIVE_ANNOTATION] || "[]");
    const waiting = pendingOf(projected);
    const parts = [];
    parts.push(h("h4", { text: live.length ? `Goes live now (${live.length})` : "Nothing goes live now" }));
    if (live.length) {
      parts.push(changesTable(live.map((c) => h("tr", {}, h("td", {}, h("code", { text: c.path })),
        h("td", { text: show(c.running) }), h("td", {}, h("span", { class: "desired", text: show(c.desired) })),
        h("td", { text: c.kind || "" }))), ["Path", "Running", "Desired", "How"], "verdict-live"));
    }
    parts.push(h("h4", { text: waiting.length ? `Waits for a restart (${waiting.length})` : "Nothing waits for a restart" }));
    if (waiting.length) {
      parts.push(changesTable(waiting.map((c) => h("tr", {}, h("td", {}, h("code", { text: c.path })),
        h("td", { text: show(c.running) }), h("td", {}, h("span", { class: "desired", text: show(c.desired) })),
        h("td", { text: c.reason }), h("td", { text: c.message }))), ["Path", "Running", "Desired", "Reason", "Why"], "verdict-pending"));
    }
    box.replaceChildren(...parts);
  };

  main.replaceChildren(h("p", {}, h("a", { href: "#/", text: "← All VMs" })), title, state, actions, progress, required,
    h("h3", { text: "Pending changes" }), pendingBox, editor,
    h("h3", { text: "Events" }), h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Type", "Reason", "Message", "Last seen"].map((t) => h("th", { scope: "col", text: t })))), events)),
    ...(session.canConsole ? [h("h3", { text: "Serial console" }), consoleOut] : []));

  const render = () => {
    const vm = vmsList.items.get(`${ns}/${name}`);
    const vmi = vmisList.items.get(`${ns}/${name}`);
    if (!vm) { state.textContent = "This VM does not exist (any more)."; return; }
    const status = (vm.status && vm.status.printableStatus) || "—";
    // Offer what the run strategy would accept now; the API still decides (and says why not).
    for (const [id, off] of [["start", status === "Running"], ["stop", !vmi], ["restart", !vmi]]) {
      const button = document.getElementById(id);
      if (button) button.disabled = off;
    }
    state.replaceChildren("Status: ", h("strong", { id: "status", text: status }),
      " · node ", (vmi && vmi.status && vmi.status.nodeName) || "—",
      " · vCPUs ", show(runningVcpus(vmi)), " / ", show(desiredVcpus(vm)),
      " · memory ", show(runningMemory(vmi)), " / ", show(desiredMemory(vm)));
    const cond = condition(vm, "RestartRequired");
    required.hidden = !restartRequired(vm);
    required.textContent = cond ? `RestartRequired: ${cond.message || cond.reason || ""}` : "";
    const pending = pendingOf(vm);
    if (!pending.length) pendingBox.replaceChildren(h("p", { id: "no-pending", class: "muted", text: "Nothing is waiting for a restart." }));
    else {
      const rows = pending.map((c) => h("tr", { "data-path": c.path },
        h("td", {}, h("code", { text: c.path })),
        h("td", { class: "running", text: show(c.running) }),
        h("td", {}, h("span", { class: "desired", text: show(c.desired) })),
        h("td", { class: "reason", title: c.message || "", text: c.reason }),
        h("td", { class: "source", text: c.source || "template" }),
        session.canWrite ? h("td", {}, h("button", { type: "button", class: "revert", "aria-label": `Revert ${c.path}`,
          onclick: () => revert([c.path]), text: "Revert" })) : null));
      const columns = ["Path", "Running", "Desired", "Reason", "Source"].concat(session.canWrite ? [""] : []);
      pendingBox.replaceChildren(changesTable(rows, columns, "pending-table"),
        ...(session.canWrite ? [h("div", { class: "actions" }, h("button", { type: "button", id: "revert-all", onclick: () => revert(null), text: "Revert all" }))] : []));
    }
    if (action) {
      const uid = vmi ? vmi.metadata.uid : null;
      const done = action.verb === "stop" ? !vmi
        : status === "Running" && (action.verb !== "restart" || (uid && uid !== action.before));
      progress.textContent = done ? `${action.verb}: done (${status}).` : `${action.verb}: in progress (${status})…`;
      if (done) action = null;
    }
  };
  const renderEvents = () => {
    const list = [...eventsList.items.values()]
      .sort((a, b) => String(b.lastTimestamp || b.eventTime || "").localeCompare(String(a.lastTimestamp || a.eventTime || "")))
      .slice(0, 25);
    events.replaceChildren(...list.map((e) => h("tr", {}, h("td", { text: e.type }), h("td", { text: e.reason }),
      h("td", { text: e.message }), h("td", { class: "num", text: e.lastTimestamp || e.eventTime || "" }))));
  };
  const selector = `fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`;
  const vmsList = new Collection(`${KV}/namespaces/${encodeURIComponent(ns)}/virtualmachines?${selector}`, render);
  const vmisList = new Collection(`${KV}/namespaces/${encodeURIComponent(ns)}/virtualmachineinstances?${selector}`, render);
  const eventsList = new Collection(`/api/v1/namespaces/${encodeURIComponent(ns)}/events?fieldSelector=${encodeURIComponent(`involvedObject.name=${name}`)}`, renderEvents);
  const stopConsole = session.canConsole ? followConsole(ns, name, consoleOut) : () => {};
  return () => { vmsList.stop(); vmisList.stop(); eventsList.stop(); stopConsole(); };
}

// The guest's serial console, followed; reconnects when its guest is replaced (restart).
function followConsole(ns, name, out) {
  const abort = new AbortController();
  const url = `${SUB}/namespaces/${encodeURIComponent(ns)}/virtualmachineinstances/${encodeURIComponent(name)}/console?follow=true&tailLines=200`;
  (async () => {
    while (!abort.signal.aborted) {
      try {
        const response = await fetch(url, { signal: abort.signal, credentials: "same-origin" });
        if (!response.ok) {
          const text = await response.text();
          let message = text;
          try { message = JSON.parse(text).message; } catch (_) { /* plain text */ }
          out.textContent = `(${message})`;
        } else {
          out.textContent = "";
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
            out.textContent = (out.textContent + decoder.decode(value, { stream: true })).slice(-65536);
            if (atBottom) out.scrollTop = out.scrollHeight;
          }
        }
      } catch (_) { if (abort.signal.aborted) return; }
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  return () => abort.abort();
}

// ---- routing and session ---------------------------------------------------------------------

function route() {
  if (view) view();
  view = null;
  showError("");
  const main = document.getElementById("main");
  if (!session) { view = signInView(main); return; }
  const match = location.hash.match(/^#\/vm\/([^/]+)\/([^/]+)$/);
  view = match ? vmView(main, decodeURIComponent(match[1]), decodeURIComponent(match[2])) : fleetView(main);
}

function signedIn() {
  document.getElementById("who").textContent = `${session.user}${session.canWrite ? "" : " (read-only)"}`;
  document.getElementById("sign-out").hidden = false;
  route();
}

function signedOut() {
  session = null;
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  route();
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/ui/session"); } catch (_) { /* signed out either way */ }
  signedOut();
});
window.addEventListener("hashchange", route);
api("GET", "/ui/session").then((s) => { session = s; signedIn(); }, () => signedOut());
