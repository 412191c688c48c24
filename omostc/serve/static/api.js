// The server's JSON API (omostc/serve/API.md): one function per route, nothing else.
// Same-origin requests; a token given as ?token= on the first load is kept by the server's cookie.

export class ApiError extends Error {
  constructor(message, status, diagnostics = []) {
    super(message);
    this.status = status;
    this.diagnostics = diagnostics;
  }
}

async function request(method, url, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(`the server cannot be reached (${err.message})`, 0);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || `${method} ${url}: HTTP ${response.status}`;
    throw new ApiError(message, response.status, (data && data.diagnostics) || []);
  }
  return data;
}

const enc = (path) => path.split("/").map(encodeURIComponent).join("/");

export const info = () => request("GET", "api/info");
export const listSpecs = () => request("GET", "api/specs");
export const loadSpec = (path) => request("GET", `api/specs/${enc(path)}`);
export const saveSpec = (path, yaml) => request("PUT", `api/specs/${enc(path)}`, { yaml });
export const validate = (yaml, path) => request("POST", "api/validate", { yaml, path });
export const compile = (code) => request("POST", "api/compile", { code });
export const sceneToYaml = (scene, path) => request("POST", "api/scene-to-yaml", { scene, path });
export const layoutOf = (scene) => request("POST", "api/layout", { scene });
export const vocabulary = () => request("GET", "api/vocabulary");
export const snap = (box) => request("POST", "api/snap", box);
export const profiles = () => request("GET", "api/profiles");
export const startRender = (body) => request("POST", "api/render", body);
export const pastRenders = (path) => request("GET", `api/renders?path=${encodeURIComponent(path)}`);

/** Follow a render job's server-sent events; handlers: {progress, done, error}. Returns a closer. */
export function renderEvents(job, handlers) {
  const source = new EventSource(`api/render/${encodeURIComponent(job)}/events`);
  let finished = false;
  for (const name of ["progress", "done", "error"]) {
    source.addEventListener(name, (event) => {
      if (!event.data) return; // a transport error event has no data: handled by onerror
      const data = JSON.parse(event.data);
      if (name !== "progress") {
        finished = true;
        source.close();
      }
      handlers[name]?.(data);
    });
  }
  source.onerror = () => {
    if (finished) return;
    finished = true;
    source.close();
    handlers.error?.({ message: "the connection to the server was lost during the render", diagnostics: [] });
  };
  return () => { finished = true; source.close(); };
}

/** Parse a text/event-stream body read with fetch (POST streams, which EventSource cannot send). */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

/** POST /api/chat and yield its events: token, done, error. `signal` aborts the request. */
export async function* chat(body, signal) {
  let response;
  try {
    response = await fetch("api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") return;
    throw new ApiError(`the server cannot be reached (${err.message})`, 0);
  }
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    throw new ApiError((data && data.error) || `chat: HTTP ${response.status}`, response.status,
      (data && data.diagnostics) || []);
  }
  yield* readEvents(response);
}
