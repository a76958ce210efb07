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
