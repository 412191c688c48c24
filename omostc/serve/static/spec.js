// The Spec view: the YAML in a textarea with a line-number gutter and a backdrop that marks
// the lines diagnostics point at. Typing is validated by the server after a short pause.

const DEBOUNCE_MS = 350;

export function diagnosticText(d) {
  const where = d.line ? `${d.line}:${d.column ?? 1}: ` : "";
  const hint = d.suggestion && !d.message.includes(d.suggestion) ? ` (did you mean '${d.suggestion}'?)` : "";
  return `${where}${d.severity}: ${d.message}${hint}`;
}

export class SpecEditor {
  /**
   * @param {HTMLElement} root  the Spec panel
   * @param {{validate: (yaml: string) => Promise<void>}} callbacks
   */
  constructor(root, callbacks) {
    this.textarea = root.querySelector('[data-testid="spec-yaml"]');
    this.gutter = root.querySelector('[data-testid="spec-gutter"]');
    this.backdrop = root.querySelector(".backdrop");
    this.list = root.querySelector('[data-testid="spec-errors"]');
    this.validity = root.querySelector('[data-testid="spec-validity"]');
    this.callbacks = callbacks;
    this.timer = null;
    this.diagnostics = [];
    this.textarea.addEventListener("input", () => this.typed());
    this.textarea.addEventListener("scroll", () => this.syncScroll());
    this.textarea.addEventListener("keydown", (e) => {
      if (e.key === "Tab" && !e.ctrlKey && !e.altKey && !e.metaKey) { // indent with spaces, as YAML wants
        e.preventDefault();
        document.execCommand("insertText", false, "  ");
      }
    });
  }

  get value() { return this.textarea.value; }

  /** Replace the text (from the server's canonical writer), keeping the scroll position. */
  set(yaml, diagnostics = []) {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.textarea.value !== yaml) {
      const top = this.textarea.scrollTop;
      this.textarea.value = yaml;
      this.textarea.scrollTop = top;
    }
    this.show(diagnostics);
  }

  typed() {
    this.paintLines();
    clearTimeout(this.timer);
    this.validity.textContent = "…";
    this.validity.className = "validity";
    this.timer = setTimeout(() => {
      this.timer = null;
      this.callbacks.validate(this.textarea.value);
    }, DEBOUNCE_MS);
  }

  get pending() { return this.timer !== null; }

  /** Show diagnostics: in the list, and at their lines in the gutter and the backdrop. */
  show(diagnostics, ok = !diagnostics.some((d) => d.severity === "error")) {
    this.diagnostics = diagnostics;
    this.validity.textContent = ok ? "✓ valid" : `✗ ${diagnostics.filter((d) => d.severity === "error").length} error(s)`;
    this.validity.className = `validity ${ok ? "ok" : "bad"}`;
    this.list.replaceChildren(...diagnostics.map((d) => {
      const li = document.createElement("li");
      li.className = d.severity;
      li.dataset.testid = "spec-error";
      if (d.line) li.dataset.line = d.line;
      li.textContent = diagnosticText(d);
      li.title = d.excerpt || "";
      li.addEventListener("click", () => this.goTo(d.line, d.column));
      return li;
    }));
    this.paintLines();
  }

  paintLines() {
    const lines = this.textarea.value.split("\n");
    const marks = new Map();
    const notes = new Map(); // the first message of each line, shown after its text
    for (const d of this.diagnostics) {
      if (!d.line) continue;
      if (marks.get(d.line) !== "bad") marks.set(d.line, d.severity === "error" ? "bad" : "warn");
      if (!notes.has(d.line)) notes.set(d.line, diagnosticText({ ...d, line: null }));
    }
    const gutter = [];
    const back = [];
    lines.forEach((line, i) => {
      const mark = marks.get(i + 1);
      const cls = mark ? ` class="${mark}"` : "";
      const note = notes.has(i + 1) ? `<span class="note">   ◀ ${escapeHtml(notes.get(i + 1))}</span>` : "";
      gutter.push(`<span${cls}${mark ? ' data-testid="spec-gutter-mark"' : ""}>${i + 1}</span>`);
      back.push(`<span${cls}>${escapeHtml(line) || " "}${note}</span>`);
    });
    this.gutter.innerHTML = gutter.join("\n");
    this.backdrop.innerHTML = back.join("\n");
    this.syncScroll();
  }

  syncScroll() {
    this.gutter.scrollTop = this.textarea.scrollTop;
    this.backdrop.scrollTop = this.textarea.scrollTop;
    this.backdrop.scrollLeft = this.textarea.scrollLeft;
  }

  goTo(line, column = 1) {
    if (!line) return;
    const lines = this.textarea.value.split("\n");
    let offset = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += Math.max(0, (column || 1) - 1);
    this.textarea.focus();
    this.textarea.setSelectionRange(offset, offset);
    const lineHeight = parseFloat(getComputedStyle(this.textarea).lineHeight) || 18;
    this.textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }
}

function escapeHtml(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
