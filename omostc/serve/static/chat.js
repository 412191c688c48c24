// The Chat view: the conversation with the LLM (as `omostc chat`). Answers stream in, compile
// on the server when complete, and replace the scene; errors are shown at their line of the
// answer. Retry asks again for the last message; Undo drops the last turn and its scene.

import * as api from "./api.js";
import { diagnosticText } from "./spec.js";

export class ChatPanel {
  /**
   * @param {HTMLElement} root
   * @param {{scene: () => object|null, path: () => string|null, snapshot: () => object, restore: (s: object) => void,
   *          answered: (data: object) => void, status: (text: string, error?: boolean) => void}} app
   */
  constructor(root, app) {
    this.$ = (id) => root.querySelector(`[data-testid="${id}"]`);
    this.app = app;
    this.list = this.$("chat-messages");
    this.errors = this.$("chat-errors");
    this.text = this.$("chat-text");
    this.messages = [];   // the conversation, user/assistant turns, no system prompt
    this.undoStack = [];  // [{messages, snapshot, text}] before each turn
    this.last = null;     // {messages, text, snapshot} of the last request, for Retry
    this.bad = null;      // {index, lines} of an answer with located errors
    this.abort = null;
    this.$("chat-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = this.text.value.trim();
      if (text) this.send(text);
    });
    this.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) this.$("chat-form").requestSubmit();
    });
    this.$("chat-retry").addEventListener("click", () => this.retry());
    this.$("chat-undo").addEventListener("click", () => this.undo());
    this.$("chat-stop").addEventListener("click", () => this.abort?.abort());
    this.draw();
  }

  /** A new spec was opened: its stored conversation becomes the chat's. */
  reset(scene) {
    this.abort?.abort();
    this.messages = (scene?.provenance?.conversation || []).map((m) => ({ role: m.role, content: m.content }));
    this.undoStack = [];
    this.last = null;
    this.bad = null;
    this.errors.textContent = "";
    this.draw();
  }

  busy(on) {
    this.$("chat-send").disabled = on;
    this.$("chat-stop").hidden = !on;
    this.$("chat-retry").disabled = on || !this.last;
    this.$("chat-undo").disabled = on || this.undoStack.length === 0;
  }

  draw(streaming = null) {
    this.list.replaceChildren(...this.messages.map((m, i) => this.item(m, i)));
    if (streaming) this.list.append(streaming);
    this.list.scrollTop = this.list.scrollHeight;
    this.busy(streaming !== null);
  }

  item(message, index) {
    const li = document.createElement("li");
    li.className = message.role;
    li.dataset.testid = `chat-${message.role}`;
    if (message.role !== "assistant") {
      li.textContent = message.content;
      return li;
    }
    const badLines = this.bad && this.bad.index === index ? this.bad.lines : new Map();
    // an answer is long Canvas code: folded to a summary line, open where it has errors
    const lines = message.content.split("\n");
    const details = document.createElement("details");
    details.open = badLines.size > 0;
    const summary = document.createElement("summary");
    if (this.messages[index - 1]?.role !== "user") summary.classList.add("scene"); // a hand-edited scene's canvas
    const prose = lines.find((l) => l.trim() && !l.startsWith("```") && !l.trim().startsWith("#"));
    const regions = message.content.split("add_local_description(").length - 1;
    summary.textContent = `${lines.length} lines, ${regions} region(s)` + (badLines.size ? ", with errors" : "");
    summary.title = prose || "";
    details.append(summary);
    lines.forEach((line, i) => {
      const span = document.createElement("span");
      span.className = "line";
      span.textContent = line || " ";
      const problem = badLines.get(i + 1);
      if (problem) {
        span.classList.add("bad");
        span.dataset.testid = "chat-error-line";
        span.title = problem;
      }
      details.append(span);
    });
    li.append(details);
    return li;
  }

  async send(text, { retry = false, messages = this.messages } = {}) {
    const snapshot = retry ? this.last.snapshot : this.app.snapshot();
    // the scene as it was before this turn (now, or before the retried one): the server starts
    // from it, or puts it in place of the last answer if the layout, form or YAML changed it since
    const scene = snapshot.scene;
    this.last = { messages, text, snapshot };
    this.errors.textContent = "";
    this.bad = null;
    const shown = [...messages, { role: "user", content: text }];
    const streaming = document.createElement("li");
    streaming.className = "assistant streaming";
    streaming.dataset.testid = "chat-streaming";
    this.messages = shown;
    this.draw(streaming);
    this.text.value = "";
    this.abort = new AbortController();
    let answer = "";
    let outcome = null;
    try {
      const body = { messages, text, retry, path: this.app.path() || undefined };
      if (scene) body.scene = scene;
      for await (const { event, data } of api.chat(body, this.abort.signal)) {
        if (event === "token") {
          answer += data.text;
          streaming.textContent = answer.split("\n").slice(-14).join("\n"); // the tail, as it grows
          this.list.scrollTop = this.list.scrollHeight;
        } else if (event === "done" || event === "error") {
          outcome = { event, data };
        }
      }
    } catch (err) {
      if (err.name !== "AbortError") outcome = { event: "error", data: { message: err.message, diagnostics: err.diagnostics } };
    }
    this.abort = null;
    if (!outcome) {
      outcome = { event: "error", data: { message: answer ? "the answer was stopped" : "stopped", answer: answer || null } };
    }
    this.finish(outcome, { messages, text, snapshot });
  }

  finish({ event, data }, before) {
    const turn = { messages: before.messages, snapshot: before.snapshot, text: before.text };
    if (event === "done") {
      this.messages = data.messages;
      this.undoStack.push(turn);
      this.app.answered(data);
      this.app.status("the answer compiled: the scene is updated");
      const warnings = (data.diagnostics || []).map(diagnosticText);
      this.errors.textContent = warnings.join("\n");
      this.errors.classList.add("warnings");
    } else {
      this.messages = data.messages || (data.answer
        ? [...before.messages, { role: "user", content: before.text }, { role: "assistant", content: data.answer }]
        : before.messages);
      if (this.messages !== before.messages && this.messages.length > before.messages.length) this.undoStack.push(turn);
      const diagnostics = data.diagnostics || [];
      const lines = new Map(diagnostics.filter((d) => d.line).map((d) => [d.line, diagnosticText(d)]));
      const lastAssistant = this.messages.length - 1;
      if (lines.size && this.messages[lastAssistant]?.role === "assistant") this.bad = { index: lastAssistant, lines };
      this.errors.textContent = [data.message, ...diagnostics.map(diagnosticText)].filter(Boolean).join("\n");
      this.errors.classList.remove("warnings");
      this.app.status(data.message || "the answer did not compile", true);
      if (!data.messages && !data.answer) this.text.value = before.text; // nothing answered: keep the text
    }
    this.draw();
  }

  retry() {
    if (!this.last) return;
    // the retried turn replaces the last one: drop its undo entry (the scene before it stays)
    if (this.undoStack.length && this.undoStack.at(-1).messages === this.last.messages) this.undoStack.pop();
    this.send(this.last.text, { retry: true, messages: this.last.messages });
  }

  undo() {
    const turn = this.undoStack.pop();
    if (!turn) return;
    this.messages = turn.messages;
    this.bad = null;
    this.last = null;
    this.errors.textContent = "";
    this.app.restore(turn.snapshot);
    this.text.value = turn.text;
    this.draw();
  }
}
