// vmplane console: a small hand-written page over the API itself (no framework, no build step).
// Every read and write is an ordinary Kubernetes API request made with the session cookie, so what
// a user may do, admission's verdicts and error messages are the API's own; the page only lists,
// watches (streamed fetch) and renders. This module signs in and out and routes between the views.

import { api, auth } from "./api.js";
import { h, showError } from "./dom.js";
import { fleetView } from "./fleet.js";
import { vmView } from "./vmpage.js";

let view = null; // the current view's stop()

// ---- views -----------------------------------------------------------------------------------

function signInView(main) {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const message = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "sign-in", onsubmit: async (e) => {
    e.preventDefault();
    try {
      auth.session = await api("POST", "/ui/session", { body: { token: input.value } });
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

function route() {
  if (view) view();
  view = null;
  showError("");
  const main = document.getElementById("main");
  if (!auth.session) { view = signInView(main); return; }
  const match = location.hash.match(/^#\/vm\/([^/]+)\/([^/]+)$/);
  view = match ? vmView(main, decodeURIComponent(match[1]), decodeURIComponent(match[2])) : fleetView(main);
}

function signedIn() {
  document.getElementById("who").textContent = `${auth.session.user}${auth.session.canWrite ? "" : " (read-only)"}`;
  document.getElementById("sign-out").hidden = false;
  route();
}

function signedOut() {
  auth.session = null;
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  route();
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/ui/session"); } catch (_) { /* signed out either way */ }
  signedOut();
});
auth.onSignedOut = signedOut;
window.addEventListener("hashchange", route);
api("GET", "/ui/session").then((s) => { auth.session = s; signedIn(); }, () => signedOut());
