// The console: sign in, pick a feature and its parameters, drop images, run the batch and follow
// it live; quota and ledger beside it.
import { AccountPanel } from "./account.js";
import { Api, newIdempotencyKey } from "./api.js";
import { finishHostedUi, hostedSignIn, localSignIn, signOut, storedToken } from "./auth.js";
import { BatchView } from "./batch.js";
import { el, clear } from "./dom.js";
import { notifyError } from "./notices.js";
import { parameterForm } from "./params.js";
import { UploadPanel } from "./upload.js";

const base = new URL(".", window.location.href).toString();
const app = () => document.getElementById("app");

const subjectOf = (token) => {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload));
    return claims.email || claims["cognito:username"] || claims.sub;
  } catch {
    return "signed in";
  }
};

const showUser = (token) => {
  const who = document.getElementById("who");
  clear(who).append(el("span", { text: subjectOf(token) }),
    el("button", { type: "button", className: "link", text: "Sign out",
      onclick: () => { signOut(); window.location.reload(); } }));
};

class NewBatch {
  constructor(api, features, onStarted) {
    this.api = api;
    this.onStarted = onStarted;
    this.features = new Map(features.map((feature) => [feature.feature_id, feature]));
    this.select = el("select", { id: "feature", onchange: () => this.showFeature() },
      features.map((f) => el("option", { value: f.feature_id, text: f.name })));
    this.about = el("p", { className: "muted" });
    this.params = el("div");
    this.uploads = new UploadPanel(api, () => this.refresh());
    this.submit = el("button", { type: "button", className: "primary", text: "Start batch",
      disabled: true, onclick: () => this.start() });
    this.node = el("div", { className: "new-batch" },
      el("section", { className: "card", "aria-labelledby": "feature-title" },
        el("h2", { id: "feature-title", text: "Feature" }),
        el("div", { className: "field" }, el("label", { for: "feature", text: "Feature" }),
          this.select),
        this.about, this.params),
      this.uploads.node, el("div", { className: "actions" }, this.submit));
    this.showFeature();
  }

  showFeature() {
    const feature = this.features.get(this.select.value);
    if (!feature) return;
    this.about.textContent = `${feature.description} ${feature.quota_cost} quota per image.`;
    this.form = parameterForm(feature);
    clear(this.params).append(this.form.fieldset);
  }

  refresh() {
    this.submit.disabled = !this.uploads.ready;
  }

  async start() {
    this.submit.disabled = true;
    try {
      const created = await this.api.createBatch(this.select.value, this.uploads.inputUrls(),
        this.form.values(), newIdempotencyKey());
      this.onStarted(created.task_id, this.uploads.thumbnails());
    } catch (error) {
      notifyError(error, "Starting the batch");
    }
    this.refresh();
  }
}

const showConsole = async (api) => {
  showUser(api.token);
  const account = new AccountPanel(api);
  const batchSlot = el("div", { className: "batch-slot" });
  let current = null;
  const started = (taskId, thumbnails) => {
    if (current) current.stop();
    current = new BatchView(api, taskId, thumbnails, () => account.refresh());
    clear(batchSlot).append(current.node);
    current.start();
    account.refresh();
  };
  let features = [];
  try {
    features = await api.features();
  } catch (error) {
    if (error.status === 401) {  // the kept token has expired: sign in again
      signOut();
      window.location.reload();
      return;
    }
    notifyError(error, "Reading the features");
  }
  const form = new NewBatch(api, features, started);
  const token = el("details", { className: "token" }, el("summary", { text: "API token" }),
    el("p", { className: "muted", text: "For the CLI (PIXELBATCH_TOKEN) or the API docs." }),
    el("code", { text: api.token }));
  clear(app()).append(el("div", { className: "columns" }, form.node,
    el("div", { className: "side" }, account.node, token)), batchSlot);
  account.refresh();
};

const main = async () => {
  const api = new Api(base);
  let config;
  try {
    config = await api.config();
  } catch (error) {
    notifyError(error, "Loading the console");
    return;
  }
  let token = storedToken();
  if (!token && config.auth === "cognito") {
    try {
      token = await finishHostedUi(config);
    } catch (error) {
      notifyError(error, "Sign-in");
    }
  }
  if (token) {
    api.token = token;
    await showConsole(api);
    return;
  }
  const onToken = (fresh) => {
    api.token = fresh;
    showConsole(api);
  };
  clear(app()).append(config.auth === "cognito"
    ? hostedSignIn(config) : localSignIn(api, config, onToken));
};

main();
