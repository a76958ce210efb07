// vmplane console: one VM: its pending changes with Revert, start/stop/restart, the edit with its
// dry-run preview, its events and its serial console.

import { KV, SUB, api, auth, Collection, subPath, vmPath } from "./api.js";
import { confirmAction, h, show, showError } from "./dom.js";
import { toYaml } from "./yaml.js";
import {
  LIVE_ANNOTATION, appliesWhen, approvalOf, condition, desiredMemory, desiredVcpus, editable, pendingOf, restartRequired, runningMemory, runningVcpus,
} from "./vm.js";

function changesTable(rows, columns, id) {
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows)));
}

export function vmView(main, ns, name) {
  let action = null; // {verb, before}: a start/stop/restart in progress
  const title = h("h2", {}, `${ns}/${name}`);
  const state = h("p", { id: "vm-state" });
  const progress = h("p", { id: "progress", class: "progress", role: "status", "aria-live": "polite" });
  const required = h("div", { id: "restart-required", class: "alert", role: "status", hidden: true });
  const pendingBox = h("div", { id: "pending" });
  const applies = h("p", { id: "applies" });
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
  if (auth.session.canWrite) {
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
    h("h3", { text: "Pending changes" }), applies, pendingBox, editor,
    h("h3", { text: "Events" }), h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Type", "Reason", "Message", "Last seen"].map((t) => h("th", { scope: "col", text: t })))), events)),
    ...(auth.session.canConsole ? [h("h3", { text: "Serial console" }), consoleOut] : []));

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
    applies.replaceChildren("Restart approval: ", h("strong", { id: "approval", text: approvalOf(vm) }),
      " · pending changes apply: ", h("span", { id: "applies-when", text: appliesWhen(vm) }));
    const pending = pendingOf(vm);
    if (!pending.length) pendingBox.replaceChildren(h("p", { id: "no-pending", class: "muted", text: "Nothing is waiting for a restart." }));
    else {
      const rows = pending.map((c) => h("tr", { "data-path": c.path },
        h("td", {}, h("code", { text: c.path })),
        h("td", { class: "running", text: show(c.running) }),
        h("td", {}, h("span", { class: "desired", text: show(c.desired) })),
        h("td", { class: "reason", title: c.message || "", text: c.reason }),
        h("td", { class: "source", text: c.source || "template" }),
        auth.session.canWrite ? h("td", {}, h("button", { type: "button", class: "revert", "aria-label": `Revert ${c.path}`,
          onclick: () => revert([c.path]), text: "Revert" })) : null));
      const columns = ["Path", "Running", "Desired", "Reason", "Source"].concat(auth.session.canWrite ? [""] : []);
      pendingBox.replaceChildren(changesTable(rows, columns, "pending-table"),
        ...(auth.session.canWrite ? [h("div", { class: "actions" }, h("button", { type: "button", id: "revert-all", onclick: () => revert(null), text: "Revert all" }))] : []));
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
  const stopConsole = auth.session.canConsole ? followConsole(ns, name, consoleOut) : () => {};
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
