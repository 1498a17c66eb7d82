// Errors and confirmations shown beside the work, never in a blocking dialog: the contract's
// message and its stable key, dismissable.
import { el } from "./dom.js";

const region = () => document.getElementById("notices");

export const notify = (text, { key = null, kind = "info" } = {}) => {
  const notice = el("li", { className: `notice ${kind}` },
    el("span", { className: "notice-text", text }),
    key ? el("code", { className: "notice-key", text: key }) : null);
  const dismiss = el("button", { type: "button", className: "link", text: "Dismiss",
    "aria-label": `Dismiss: ${text}`, onclick: () => notice.remove() });
  notice.append(dismiss);
  region().append(notice);
  if (kind === "info") setTimeout(() => notice.remove(), 8000);
  return notice;
};

export const notifyError = (error, doing) => {
  const prefix = doing ? `${doing}: ` : "";
  return notify(prefix + error.message, { key: error.key || null, kind: "error" });
};
