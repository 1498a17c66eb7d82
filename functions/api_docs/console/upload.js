// Drag-and-drop (or choose) up to 50 images; each is uploaded at once through its presigned PUT
// with its own progress bar. `inputUrls()` gives the uploaded images in order.
import { el, clear } from "./dom.js";
import { notify, notifyError } from "./notices.js";

export const MAX_IMAGES = 50;
const PARALLEL_PUTS = 4;
const IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp",
  "image/tiff"];

const entryRow = (entry) => {
  entry.bar = el("progress", { max: 100, value: 0, "aria-label": `Upload of ${entry.file.name}` });
  entry.state = el("span", { className: "muted", text: "waiting" });
  return el("li", { className: "upload" },
    el("img", { src: entry.thumb, alt: "", className: "thumb-small" }),
    el("span", { className: "name", text: entry.file.name }), entry.bar, entry.state);
};

const runLimited = async (jobs, limit) => {
  const queue = [...jobs];
  const workers = Array.from({ length: limit }, async () => {
    while (queue.length) await queue.shift()();
  });
  await Promise.all(workers);
};

export class UploadPanel {
  constructor(api, onChange) {
    this.api = api;
    this.onChange = onChange;
    this.entries = [];
    this.busy = 0;
    this.list = el("ol", { className: "uploads", "aria-label": "Images to process" });
    this.input = el("input", { id: "file-input", type: "file", multiple: true,
      accept: IMAGE_TYPES.join(","), onchange: () => this.add([...this.input.files]) });
    this.zone = el("div", { className: "dropzone", "data-testid": "dropzone" },
      el("p", { text: `Drop up to ${MAX_IMAGES} images here, or ` },
        el("label", { for: "file-input", className: "button", text: "Choose images" })),
      this.input);
    this.zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      this.zone.classList.add("over");
    });
    this.zone.addEventListener("dragleave", () => this.zone.classList.remove("over"));
    this.zone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.zone.classList.remove("over");
      this.add([...event.dataTransfer.files]);
    });
    this.clearButton = el("button", { type: "button", text: "Clear images",
      onclick: () => this.reset() });
    this.node = el("section", { className: "card", "aria-labelledby": "upload-title" },
      el("h2", { id: "upload-title", text: "Images" }), this.zone, this.list, this.clearButton);
  }

  get ready() {
    return this.entries.length > 0 && this.busy === 0
      && this.entries.every((entry) => entry.inputUrl);
  }

  inputUrls() {
    return this.entries.map((entry) => entry.inputUrl);
  }

  thumbnails() {
    return this.entries.map((entry) => ({ name: entry.file.name, thumb: entry.thumb }));
  }

  reset() {
    this.entries.forEach((entry) => URL.revokeObjectURL(entry.thumb));
    this.entries = [];
    clear(this.list);
    this.input.value = "";
    this.onChange();
  }

  async add(files) {
    const images = files.filter((file) => IMAGE_TYPES.includes(file.type));
    if (images.length < files.length) {
      notify(`${files.length - images.length} file(s) skipped: not an image type`,
        { kind: "error", key: "unsupported_file_type" });
    }
    const room = MAX_IMAGES - this.entries.length;
    if (images.length > room) {
      notify(`Only ${MAX_IMAGES} images per batch: ${images.length - room} left out`,
        { kind: "error", key: "too_many_images" });
    }
    const added = images.slice(0, Math.max(0, room)).map((file) => ({
      file, thumb: URL.createObjectURL(file), inputUrl: null }));
    if (!added.length) return;
    added.forEach((entry) => this.list.append(entryRow(entry)));
    this.entries.push(...added);
    await this.upload(added);
  }

  async upload(added) {
    this.busy += 1;
    this.onChange();
    try {
      const uploads = await this.api.presignUploads(added.map((entry) => entry.file));
      const jobs = added.map((entry, i) => () => this.put(entry, uploads[i]));
      await runLimited(jobs, PARALLEL_PUTS);
    } catch (error) {
      added.forEach((entry) => { entry.state.textContent = "not uploaded"; });
      notifyError(error, "Upload");
    } finally {
      this.busy -= 1;
      this.onChange();
    }
  }

  async put(entry, upload) {
    entry.state.textContent = "uploading";
    try {
      entry.inputUrl = await this.api.putFile(upload, entry.file, (fraction) => {
        entry.bar.value = Math.round(fraction * 100);
      });
      entry.state.textContent = "uploaded";
    } catch (error) {
      entry.state.textContent = "failed";
      notifyError(error, `Upload of ${entry.file.name}`);
    }
  }
}
