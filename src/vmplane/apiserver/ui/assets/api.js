// vmplane console: the API, as the page calls it: JSON requests with the session cookie (and its
// CSRF token on writes), and collections kept current by list + watch (a streamed fetch).

import { showError } from "./dom.js";

export const KV = "/apis/kubevirt.io/v1";
export const SUB = "/apis/subresources.kubevirt.io/v1";
// The signed-in session ({user, csrf, canWrite, canConsole}) and what to do when it ends.
export const auth = { session: null, onSignedOut: () => {} };

export class ApiError extends Error {
  constructor(message, code) { super(message); this.code = code; }
}

export async function api(method, path, { body, contentType, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && auth.session) headers["X-CSRF-Token"] = auth.session.csrf;
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const response = await fetch(path, {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (_) { data = { message: text }; }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/ui/session")) auth.onSignedOut();
    throw new ApiError(data.message || `${response.status} ${response.statusText}`, response.status);
  }
  return data;
}

export function key(obj) { return `${obj.metadata.namespace}/${obj.metadata.name}`; }
export function vmPath(ns, name) { return `${KV}/namespaces/${encodeURIComponent(ns)}/virtualmachines/${encodeURIComponent(name)}`; }
export function subPath(ns, name, action) { return `${SUB}/namespaces/${encodeURIComponent(ns)}/virtualmachines/${encodeURIComponent(name)}/${action}`; }


// A collection kept current: list, then watch from the list's resourceVersion; relist on any end.
export class Collection {
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
