// Signing in. On the local stack: a form that makes (or resets) a dev user and returns its token.
// On AWS: the Cognito Hosted UI with the authorization code flow and PKCE; the ID token is the
// API's bearer token. The token lives in this tab's sessionStorage only.
import { exchangeCode } from "./api.js";
import { el } from "./dom.js";
import { notifyError } from "./notices.js";

const TOKEN = "pixelbatch.token";
const PKCE = "pixelbatch.pkce";

export const storedToken = () => sessionStorage.getItem(TOKEN);
export const signOut = () => sessionStorage.removeItem(TOKEN);
const keep = (token) => sessionStorage.setItem(TOKEN, token);

const field = (id, label, input) => el("div", { className: "field" },
  el("label", { for: id, text: label }), input);

export const localSignIn = (api, config, onToken) => {
  const user = el("input", { id: "signin-user", required: true, value: "alice",
    pattern: "[A-Za-z0-9._@+\\-]{1,128}", autocomplete: "username" });
  const quota = el("input", { id: "signin-quota", type: "number", min: 0, value: 100 });
  const plan = el("select", { id: "signin-plan" },
    ["free", "pro", "enterprise"].map((name) => el("option", { value: name, text: name,
      selected: name === "pro" })));
  const form = el("form", { className: "card signin", "aria-labelledby": "signin-title" },
    el("h2", { id: "signin-title", text: "Sign in to the local stack" }),
    el("p", { className: "muted",
      text: "Makes (or resets) a dev user with this quota and plan. Local stack only." }),
    field("signin-user", "User id", user), field("signin-quota", "Quota", quota),
    field("signin-plan", "Plan", plan),
    el("button", { type: "submit", className: "primary", text: "Sign in" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const reply = await api.createLocalUser(config.users_url, {
        user_id: user.value, quota: Number.parseInt(quota.value, 10), plan: plan.value });
      keep(reply.token);
      onToken(reply.token);
    } catch (error) {
      notifyError(error, "Sign-in");
    }
  });
  return form;
};

const base64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

const randomString = () => base64url(crypto.getRandomValues(new Uint8Array(32)));

const redirectUri = () => new URL(".", window.location.href).toString();

const startHostedUi = async (config) => {
  const verifier = randomString();
  const state = randomString();
  sessionStorage.setItem(PKCE, JSON.stringify({ verifier, state }));
  const challenge = base64url(await crypto.subtle.digest("SHA-256",
    new TextEncoder().encode(verifier)));
  const query = new URLSearchParams({
    response_type: "code", client_id: config.client_id, redirect_uri: redirectUri(),
    scope: config.scopes.join(" "), state, code_challenge: challenge,
    code_challenge_method: "S256",
  });
  window.location.assign(`${config.authorize_url}?${query}`);
};

// Back from the Hosted UI with ?code=...&state=...: trade the code for tokens.
export const finishHostedUi = async (config) => {
  const params = new URLSearchParams(window.location.search);
  const saved = JSON.parse(sessionStorage.getItem(PKCE) || "null");
  if (!params.get("code") || !saved) return null;
  sessionStorage.removeItem(PKCE);
  window.history.replaceState(null, "", redirectUri());
  if (params.get("state") !== saved.state) throw new Error("sign-in state mismatch");
  const idToken = await exchangeCode(config, params.get("code"), redirectUri(), saved.verifier);
  keep(idToken);
  return idToken;
};

export const hostedSignIn = (config) => el("section", { className: "card signin" },
  el("h2", { text: "Sign in" }),
  el("button", { type: "button", className: "primary", text: "Sign in with PixelBatch account",
    onclick: () => startHostedUi(config) }));
