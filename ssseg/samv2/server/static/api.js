// The JSON API of `ssseg-samv2 serve`, as the page calls it.
//
// Every request goes through Api.request: it adds `Authorization: Bearer <token>` once a token is known, asks the
// user for the token when the server answers 401 (one dialog however many requests are waiting), and turns error
// answers into ApiError with the server's own message.

const TOKEN_KEY = "ssseg.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The human-readable message of an error body: {"error": {"message"}}, {"message"} or FastAPI's {"detail"}. */
export function errorMessage(body, status, statusText) {
  if (body && typeof body === "object") {
    const err = body.error;
    if (err && typeof err === "object" && err.message) return String(err.message);
    if (typeof err === "string") return err;
    if (body.message) return String(body.message);
    const detail = body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((d) => {
          const where = Array.isArray(d.loc) ? d.loc.filter((x) => x !== "body").join(".") : "";
          return where ? `${where}: ${d.msg}` : String(d.msg ?? JSON.stringify(d));
        })
        .join("; ");
    }
  }
  if (typeof body === "string" && body.trim()) return body.trim().slice(0, 300);
  return `HTTP ${status} ${statusText || ""}`.trim();
}

async function readError(response) {
  const text = await response.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return new ApiError(response.status, errorMessage(body, response.status, response.statusText));
}

export class Api {
  /** askToken(rejected: boolean) -> Promise<string|null>: shows the token dialog; null when the user gives up. */
  constructor(askToken) {
    this.askToken = askToken;
    this.token = sessionStorage.getItem(TOKEN_KEY) || "";
    this.pendingToken = null;
  }

  headers(extra = {}) {
    const headers = { ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }

  /** Ask for a token once for all waiting requests; true when a new one was entered. */
  async renewToken() {
    if (!this.pendingToken) {
      const rejected = Boolean(this.token);
      this.pendingToken = this.askToken(rejected).then((token) => {
        this.pendingToken = null;
        if (!token) return false;
        this.token = token.trim();
        sessionStorage.setItem(TOKEN_KEY, this.token);
        return true;
      });
    }
    return this.pendingToken;
  }

  /** fetch with the token; JSON body via `json`; returns the Response (ok) or throws ApiError. */
  async fetch(method, path, { json, body, signal, headers } = {}) {
    for (;;) {
      const init = { method, signal, headers: this.headers(headers) };
      if (json !== undefined) {
        init.body = JSON.stringify(json);
        init.headers["Content-Type"] = "application/json";
      } else if (body !== undefined) {
        init.body = body;
      }
      let response;
      try {
        response = await fetch(path, init);
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new ApiError(0, `cannot reach the server (${error.message})`);
      }
      if (response.status === 401 && (await this.renewToken())) continue;
      if (!response.ok) throw await readError(response);
      return response;
    }
  }

  async json(method, path, options) {
    const response = await this.fetch(method, path, options);
    if (response.status === 204) return null;
    return response.json();
  }

  /** Multipart upload with progress (fetch cannot report upload progress, XMLHttpRequest can). */
  upload(path, file, onProgress) {
    const once = () =>
      new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", path);
        for (const [key, value] of Object.entries(this.headers())) xhr.setRequestHeader(key, value);
        xhr.upload.onprogress = (event) => {
          if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
        };
        xhr.onerror = () => reject(new ApiError(0, "upload failed: cannot reach the server"));
        xhr.onload = () => {
          let body = xhr.responseText;
          try {
            body = JSON.parse(xhr.responseText);
          } catch {
            // keep the text
          }
          if (xhr.status >= 200 && xhr.status < 300) resolve(body);
          else reject(new ApiError(xhr.status, errorMessage(body, xhr.status, xhr.statusText)));
        };
        const form = new FormData();
        form.append("file", file, file.name);
        xhr.send(form);
      });
    const attempt = async () => {
      try {
        return await once();
      } catch (error) {
        if (error.status === 401 && (await this.renewToken())) return attempt();
        throw error;
      }
    };
    return attempt();
  }

  /** Yields the JSON objects of a newline-delimited JSON answer as they arrive. */
  async *ndjson(method, path, options) {
    const response = await this.fetch(method, path, options);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) yield JSON.parse(line);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim()) yield JSON.parse(buffer);
  }

  // The endpoints.
  health() {
    return this.json("GET", "/api/health");
  }
  listFiles(dir = "") {
    return this.json("GET", `/api/files?dir=${encodeURIComponent(dir)}`);
  }
  listSessions() {
    return this.json("GET", "/api/sessions");
  }
  openUpload(file, onProgress) {
    return this.upload("/api/sessions", file, onProgress);
  }
  openPath(path) {
    return this.json("POST", "/api/sessions", { json: { path } });
  }
  session(id) {
    return this.json("GET", `/api/sessions/${id}`);
  }
  closeSession(id) {
    return this.json("DELETE", `/api/sessions/${id}`);
  }
  async frame(id, t, signal) {
    const response = await this.fetch("GET", `/api/sessions/${id}/frames/${t}`, { signal });
    return response.blob();
  }
  frameMasks(id, t) {
    return this.json("GET", `/api/sessions/${id}/frames/${t}/masks`);
  }
  prompt(id, body) {
    return this.json("POST", `/api/sessions/${id}/prompts`, { json: body });
  }
  renameObject(id, objectId, name) {
    return this.json("PATCH", `/api/sessions/${id}/objects/${objectId}`, { json: { name } });
  }
  removeObject(id, objectId) {
    return this.json("DELETE", `/api/sessions/${id}/objects/${objectId}`);
  }
  clearPrompts(id, t, objectId) {
    const query = objectId === undefined ? "" : `?object_id=${objectId}`;
    return this.json("DELETE", `/api/sessions/${id}/frames/${t}/prompts${query}`);
  }
  propagate(id, body, signal) {
    return this.ndjson("POST", `/api/sessions/${id}/propagate`, { json: body, signal });
  }
  cancel(id) {
    return this.json("POST", `/api/sessions/${id}/cancel`);
  }
  everything(id, options = {}) {
    return this.json("POST", `/api/sessions/${id}/everything`, { json: options });
  }
  async exportFile(id, format) {
    const response = await this.fetch("GET", `/api/sessions/${id}/export?format=${encodeURIComponent(format)}`);
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
    return { blob: await response.blob(), filename: match ? decodeURIComponent(match[1]) : null };
  }
}
