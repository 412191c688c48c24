// The Render view: pick a profile (preview by default: no model needed), render the scene with
// live progress from server-sent events, show the image with its settings, list past renders.

import * as api from "./api.js";
import { diagnosticText } from "./spec.js";

export class RenderPanel {
  /**
   * @param {HTMLElement} root
   * @param {{request: () => object|null, status: (text: string, error?: boolean) => void}} callbacks
   *   request(): the body of POST /api/render for the current scene ({path, yaml}), or null
   */
  constructor(root, callbacks) {
    this.$ = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.callbacks = callbacks;
    this.profile = this.$("render-profile");
    this.button = this.$("render-start");
    this.progress = this.$("render-progress");
    this.log = this.$("render-log");
    this.result = this.$("render-result");
    this.image = this.$("render-image");
    this.settings = this.$("render-settings");
    this.past = this.$("render-past");
    this.close = null;
    this.path = null;
    this.button.addEventListener("click", () => this.start());
  }

  async loadProfiles() {
    const { default: chosen, profiles } = await api.profiles();
    this.profile.replaceChildren(...profiles.map((p) => {
      const option = document.createElement("option");
      option.value = p.name;
      option.textContent = p.needs_model ? `${p.name} (${p.backend}, needs a model)` : `${p.name} (${p.backend})`;
      option.title = p.description || "";
      option.selected = p.name === chosen;
      return option;
    }));
  }

  enable(on) {
    this.button.disabled = !on || this.close !== null;
  }

  async start() {
    const body = this.callbacks.request();
    if (!body) return;
    body.profile = this.profile.value || undefined;
    this.button.disabled = true;
    this.progress.hidden = false;
    this.progress.removeAttribute("value"); // indeterminate until the first step
    this.setLog(`rendering on ${body.profile}…`);
    let job;
    try {
      ({ job } = await api.startRender(body));
    } catch (err) {
      this.finish();
      this.setLog([err.message, ...err.diagnostics.map(diagnosticText)].join("\n"), true);
      return;
    }
    this.close = api.renderEvents(job, {
      progress: ({ step, steps }) => {
        this.progress.max = steps || 1;
        this.progress.value = step;
        this.setLog(`step ${step} of ${steps}`);
      },
      done: (data) => {
        this.finish();
        this.show(data);
        this.setLog(`${data.status} ${data.path} in ${Number(data.seconds ?? 0).toFixed(1)} s on ${data.profile}`);
        this.callbacks.status(`rendered ${data.path}`);
        this.loadPast(this.path);
      },
      error: (data) => {
        this.finish();
        this.setLog([data.message, ...(data.diagnostics || []).map(diagnosticText)].join("\n"), true);
      },
    });
  }

  finish() {
    if (this.close) this.close();
    this.close = null;
    this.progress.hidden = true;
    this.button.disabled = false;
  }

  setLog(text, error = false) {
    this.log.textContent = text;
    this.log.classList.toggle("error", error);
  }

  /** Show one image with its settings: a done event or a manifest row. */
  show(data) {
    if (!data.image) return;
    this.result.hidden = false;
    this.image.src = data.image;
    this.image.alt = `Render ${data.path || ""}`;
    const rows = { file: data.path, seed: data.seed, profile: data.profile, ...(data.settings || {}) };
    this.settings.replaceChildren();
    for (const [key, value] of Object.entries(rows)) {
      if (value === undefined || value === null) continue;
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
      this.settings.append(dt, dd);
    }
  }

  /** The batch runner's past renders of the spec at `path` (newest first). */
  async loadPast(path) {
    this.path = path;
    this.past.replaceChildren();
    if (!path) return;
    let renders = [];
    try {
      ({ renders } = await api.pastRenders(path));
    } catch (err) {
      this.setLog(err.message, true);
      return;
    }
    if (path !== this.path) return; // another spec was opened meanwhile
    for (const row of renders.filter((r) => r.image).slice(0, 24)) {
      const img = document.createElement("img");
      img.src = row.image;
      img.alt = `seed ${row.seed}`;
      img.loading = "lazy";
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.testid = "render-past-item";
      button.title = [row.output, row.status, row.finished].filter(Boolean).join(" · ");
      const caption = document.createElement("span");
      caption.textContent = `seed ${row.seed}`;
      button.append(img, caption);
      button.addEventListener("click", () => this.show({ ...row, path: row.output || row.path }));
      const li = document.createElement("li");
      li.append(button);
      this.past.append(li);
    }
  }

  clear() {
    this.result.hidden = true;
    this.image.removeAttribute("src");
    this.setLog("");
  }
}
