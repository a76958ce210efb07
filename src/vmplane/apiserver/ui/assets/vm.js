// vmplane console: what the page reads of VM and VMI objects.

export const LIVE_ANNOTATION = "vmplane.io/dry-run-live-changes";

export function condition(obj, type) {
  return ((obj && obj.status && obj.status.conditions) || []).find((c) => c.type === type) || null;
}
export function restartRequired(vm) { const c = condition(vm, "RestartRequired"); return !!c && c.status === "True"; }
export function pendingOf(vm) { return (vm && vm.status && vm.status.pendingChanges) || []; }
export function domainOf(vm) { return (((vm.spec || {}).template || {}).spec || {}).domain || {}; }
export function desiredVcpus(vm) {
  const cpu = domainOf(vm).cpu || {};
  return (cpu.sockets || 1) * (cpu.cores || 1) * (cpu.threads || 1);
}
export function runningVcpus(vmi) {
  const t = vmi && vmi.status && vmi.status.currentCPUTopology;
  return t ? (t.sockets || 1) * (t.cores || 1) * (t.threads || 1) : null;
}
export function desiredMemory(vm) {
  const d = domainOf(vm);
  return (d.memory && d.memory.guest) || ((d.resources || {}).requests || {}).memory || null;
}
export function runningMemory(vmi) { return (vmi && vmi.status && vmi.status.memory && vmi.status.memory.guestCurrent) || null; }

export function editable(vm) {
  const m = vm.metadata;
  const metadata = { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion };
  if (m.labels) metadata.labels = m.labels;
  if (m.annotations) metadata.annotations = m.annotations;
  return { apiVersion: vm.apiVersion, kind: vm.kind, metadata, spec: vm.spec };
}

// Restart approval (the annotation on the VM, else on its template; Manual by default) and when the
// VM's pending changes will apply under it: Window reads the RestartScheduled condition the
// approval controller keeps (the window's name and next start).
export const APPROVAL_ANNOTATION = "vmplane.io/restart-approval";
export function approvalOf(vm) {
  const own = (vm.metadata && vm.metadata.annotations) || {};
  const template = (((vm.spec || {}).template || {}).metadata || {}).annotations || {};
  return own[APPROVAL_ANNOTATION] || template[APPROVAL_ANNOTATION] || "Manual";
}
export function appliesWhen(vm) {
  if (!pendingOf(vm).length) return "nothing is pending";
  const approval = approvalOf(vm);
  if (approval === "Automatic") return "at once (Automatic approval)";
  if (approval !== "Window") return "at the next restart you make (Manual approval)";
  const scheduled = condition(vm, "RestartScheduled");
  return scheduled ? `${scheduled.message} (Window approval)` : "in a maintenance window, once one is scheduled (Window approval)";
}
