// One batch, live: counters, a card per image (thumbnail, status, error, result preview and its
// download), retry-failed, cancel and the ZIP. Polls the task until it has finished.
import { isFinished, newIdempotencyKey } from "./api.js";
import { el, clear, saveBlob } from "./dom.js";
import { notify, notifyError } from "./notices.js";

const POLL_MS = 1000;
const COUNTERS = [
  ["batch_pending", "pending"], ["batch_processing", "processing"],
  ["batch_success", "succeeded"], ["batch_failed", "failed"], ["batch_cancelled", "cancelled"],
];

const extensionOf = (url) => {
  const match = /\.([a-z0-9]+)(?:\?|$)/i.exec(new URL(url).pathname);
  return match ? match[1] : "bin";
};

export class BatchView {
  constructor(api, taskId, thumbnails, onSettled) {
    this.api = api;
    this.taskId = taskId;
    this.thumbnails = thumbnails;
    this.onSettled = onSettled;
    this.cards = new Map();
    this.timer = null;
    this.generation = 0;  // a poll from before stop() must not schedule another
    this.status = el("p", { className: "batch-status", role: "status" });
    this.counters = el("dl", { className: "counters", "aria-label": "Counters" });
    this.grid = el("ul", { className: "grid", "aria-label": "Batch images" });
    this.retryButton = el("button", { type: "button", text: "Retry failed", disabled: true,
      onclick: () => this.retry() });
    this.cancelButton = el("button", { type: "button", text: "Cancel batch", disabled: true,
      onclick: () => this.cancel() });
    this.zipButton = el("button", { type: "button", className: "primary", text: "Download ZIP",
      disabled: true, onclick: () => this.downloadZip() });
    this.node = el("section", { className: "card batch", "aria-labelledby": "batch-title" },
      el("h2", { id: "batch-title", text: "Batch " }, el("code", { text: taskId })),
      this.status, this.counters,
      el("div", { className: "actions" }, this.zipButton, this.retryButton, this.cancelButton),
      this.grid);
  }

  start() {
    this.poll();
    return this;
  }

  stop() {
    clearTimeout(this.timer);
    this.generation += 1;
  }

  async poll() {
    const generation = this.generation;
    try {
      const task = await this.api.task(this.taskId);
      if (generation !== this.generation) return;
      this.render(task);
      if (isFinished(task.status)) {
        this.onSettled(task);
        return;
      }
    } catch (error) {
      notifyError(error, "Reading the batch");
    }
    if (generation === this.generation) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  render(task) {
    const finished = isFinished(task.status);
    this.status.textContent = finished
      ? `Finished: ${task.status.replace("_", " ")}`
      : `Running: ${task.status}`;
    this.status.dataset.status = task.status;
    clear(this.counters);
    COUNTERS.forEach(([field, label]) => this.counters.append(
      el("div", { className: `counter ${label}` }, el("dt", { text: label }),
        el("dd", { text: task[field] ?? 0 }))));
    task.batch_items.forEach((item) => this.renderItem(item));
    this.retryButton.disabled = !(finished && task.batch_failed > 0 && task.status !== "cancelled");
    this.cancelButton.disabled = finished;
    this.zipButton.disabled = !(finished && task.batch_success > 0);
  }

  card(index) {
    if (!this.cards.has(index)) {
      const known = this.thumbnails[index] || {};
      const name = known.name || `image ${index + 1}`;
      const parts = {
        status: el("span", { className: "badge" }),
        error: el("p", { className: "item-error" }),
        result: el("div", { className: "result" }),
      };
      const placeholder = () => el("div", { className: "thumb placeholder", text: "no preview" });
      const thumb = known.thumb
        ? el("img", { src: known.thumb, alt: `Original ${name}`, className: "thumb",
          onerror: (event) => event.target.replaceWith(placeholder()) })
        : placeholder();
      const node = el("li", { className: "item", "aria-label": name },
        thumb, el("div", { className: "item-head" }, el("span", { className: "name", text: name }),
          parts.status), parts.error, parts.result);
      this.grid.append(node);
      this.cards.set(index, { node, name, url: null, ...parts });
    }
    return this.cards.get(index);
  }

  renderItem(item) {
    const card = this.card(item.index);
    card.node.dataset.status = item.status;
    card.status.textContent = item.status;
    card.status.className = `badge ${item.status}`;
    card.error.textContent = item.error_message
      ? `${item.error_message}${item.error_code ? ` (${item.error_code})` : ""}` : "";
    if (item.output_url && !card.url) this.showResult(card, item);
    if (!item.output_url && card.url) {
      clear(card.result);
      card.url = null;
    }
  }

  showResult(card, item) {
    card.url = item.output_url;
    const filename = `result_${item.index + 1}.${extensionOf(item.output_url)}`;
    card.result.append(
      el("img", { src: item.output_url, alt: `Result ${card.name}`, className: "preview" }),
      el("button", { type: "button", text: "Download", "aria-label": `Download ${filename}`,
        onclick: () => this.downloadItem(item.output_url, filename) }));
  }

  async downloadItem(url, filename) {
    try {
      saveBlob(await this.api.download(url), filename);
    } catch (error) {
      notifyError(error, `Download of ${filename}`);
    }
  }

  async downloadZip() {
    try {
      saveBlob(await this.api.zip(this.taskId), `batch_${this.taskId}.zip`);
    } catch (error) {
      notifyError(error, "ZIP download");
    }
  }

  async retry() {
    this.retryButton.disabled = true;
    try {
      const reply = await this.api.retryFailed(this.taskId, newIdempotencyKey());
      notify(`${reply.message} (quota ${reply.quota_cost})`);
      this.stop();
      this.poll();
    } catch (error) {
      notifyError(error, "Retry");
      this.retryButton.disabled = false;
    }
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      const reply = await this.api.cancel(this.taskId, newIdempotencyKey());
      notify(`${reply.message} (refund ${reply.refund_amount})`);
    } catch (error) {
      notifyError(error, "Cancel");
    }
    this.stop();
    this.poll();
  }
}
