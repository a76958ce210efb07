// vmplane console: the fleet, every VM with its sizes and pending count, and the rollout strategy.

import { KV, api, auth, Collection, key } from "./api.js";
import { confirmAction, h, show, showError } from "./dom.js";
import { desiredMemory, desiredVcpus, pendingOf, restartRequired, runningMemory, runningVcpus } from "./vm.js";

export function fleetView(main) {
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
  const windowBox = h("section", { id: "next-window", "aria-live": "polite" });
  main.replaceChildren(h("h2", { text: "Virtual machines" }), strategy, banner, table, empty, windowBox);

  // The next maintenance window and its batches: the server computes them with the planning
  // `vmplane restarts plan` prints, so the page never re-implements the batching.
  const renderPlan = (plan) => {
    const heading = h("h3", { text: "Next maintenance window" });
    if (!plan) { windowBox.replaceChildren(heading, h("p", { class: "muted", text: "No MaintenanceWindow exists." })); return; }
    const summary = h("p", { id: "window-summary" }, h("strong", { id: "window-name", text: plan.window }),
      `: ${plan.start} to ${plan.end}, at most ${plan.maxUnavailable} VM(s) down at a time`,
      plan.halted ? " (halted: nothing more restarts in this opening)" : "");
    if (!plan.batches.length) {
      windowBox.replaceChildren(heading, summary, h("p", { id: "no-batches", class: "muted", text: "Nothing to restart: no selected VM with Window approval has pending changes." }));
      return;
    }
    const rows = plan.batches.flatMap((batch, i) => batch.map((entry) => h("tr", { "data-vm": entry.vm, "data-batch": String(i + 1) },
      h("td", { class: "num batch", text: String(i + 1) }), h("td", { text: entry.vm }),
      h("td", {}, entry.pendingChanges.map((p) => h("code", { text: p })).flatMap((c, j) => (j ? [", ", c] : [c]))))));
    windowBox.replaceChildren(heading, summary, h("div", { class: "table-wrap" }, h("table", { id: "window-batches" },
      h("thead", {}, h("tr", {}, ["Batch", "VM", "Pending changes"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows))));
  };
  let planTimer = null;
  const refreshPlan = () => {
    clearTimeout(planTimer);
    planTimer = setTimeout(async () => {
      try { renderPlan((await api("GET", "/ui/restart-plan")).plan); } catch (err) { showError(err.message); }
    }, 200);
  };

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
      ...(auth.session.canWrite ? [h("button", { type: "button", id: "strategy-switch", onclick: switchTo, text: `Switch to ${other}` })] : []));
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
  const vmsList = new Collection(`${KV}/virtualmachines`, () => { render(); refreshPlan(); });
  const vmisList = new Collection(`${KV}/virtualmachineinstances`, render);
  const windows = new Collection("/apis/vmplane.io/v1alpha1/maintenancewindows", refreshPlan);
  return () => { vmsList.stop(); vmisList.stop(); kubevirts.stop(); windows.stop(); clearTimeout(planTimer); };
}
