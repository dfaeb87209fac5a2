// Small UI pieces: toasts (non-blocking messages), modal dialogs (token, confirm, file browser, help).

const toasts = () => document.getElementById("toasts");

/** A non-blocking message at the bottom of the page; errors stay longer. Click to dismiss. */
export function toast(message, kind = "info", ms = kind === "error" ? 8000 : 3000) {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  el.textContent = message;
  el.title = "Click to dismiss";
  el.addEventListener("click", () => el.remove());
  toasts().appendChild(el);
  while (toasts().children.length > 5) toasts().firstElementChild.remove();
  setTimeout(() => el.remove(), ms);
  return el;
}

/** Show an error (ApiError or any Error) as a toast; aborted requests are not errors. */
export function showError(error, what = "") {
  if (error && error.name === "AbortError") return;
  const message = error && error.message ? error.message : String(error);
  const status = error && error.status ? ` (${error.status})` : "";
  toast(what ? `${what}: ${message}${status}` : `${message}${status}`, "error");
  if (!error || !error.status) console.error(error);
}

let closeCurrent = null;

export function dialogOpen() {
  return closeCurrent !== null;
}

export function closeDialog() {
  if (closeCurrent) closeCurrent(null);
}

/**
 * A modal dialog. build(body, close) fills the body; buttons: [{label, value, primary}]. Resolves with the value of
 * the button pressed (or what close() is called with), null on Escape or a click outside.
 */
export function dialog(title, build, buttons = [{ label: "Close", value: null }]) {
  closeDialog();
  const modal = document.getElementById("modal");
  const box = modal.querySelector(".dialog");
  box.replaceChildren();
  const heading = document.createElement("h2");
  heading.textContent = title;
  const body = document.createElement("div");
  body.className = "dialog-body";
  const footer = document.createElement("div");
  footer.className = "dialog-buttons";
  box.append(heading, body, footer);
  modal.hidden = false;
  return new Promise((resolve) => {
    const close = (value) => {
      if (closeCurrent !== close) return;
      closeCurrent = null;
      modal.hidden = true;
      modal.onclick = null;
      resolve(value);
    };
    closeCurrent = close;
    const value = build ? build(body, close) : undefined;
    for (const b of buttons) {
      const button = document.createElement("button");
      button.textContent = b.label;
      if (b.primary) button.classList.add("primary");
      button.addEventListener("click", () => close(typeof b.value === "function" ? b.value() : b.value));
      footer.appendChild(button);
    }
    modal.onclick = (e) => {
      if (e.target === modal) close(null);
    };
    const focus = body.querySelector("input") || footer.querySelector(".primary");
    if (focus) focus.focus();
    return value;
  });
}

/** Ask for the API token (once; again only when the server rejected it). */
export function askToken(rejected) {
  let input;
  const value = () => input.value;
  return dialog(
    "Access token",
    (body, close) => {
      const p = document.createElement("p");
      p.textContent = rejected
        ? "The server rejected the token. Enter the token given to `ssseg-samv2 serve --token`."
        : "This server needs a token (`ssseg-samv2 serve --token`). It is kept for this browser tab only.";
      input = document.createElement("input");
      input.type = "password";
      input.id = "token-input";
      input.autocomplete = "off";
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter") close(input.value);
      });
      body.append(p, input);
    },
    [
      { label: "Cancel", value: null },
      { label: "Use token", value, primary: true },
    ],
  );
}

export function confirmDialog(title, message, ok = "OK") {
  return dialog(
    title,
    (body) => {
      const p = document.createElement("p");
      p.textContent = message;
      body.appendChild(p);
    },
    [
      { label: "Cancel", value: false },
      { label: ok, value: true, primary: true },
    ],
  );
}

/** Ask for a line of text (rename). */
export function askText(title, initial) {
  let input;
  return dialog(
    title,
    (body, close) => {
      input = document.createElement("input");
      input.type = "text";
      input.value = initial;
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter") close(input.value);
      });
      body.appendChild(input);
      setTimeout(() => input.select(), 0);
    },
    [
      { label: "Cancel", value: null },
      { label: "OK", value: () => input.value, primary: true },
    ],
  );
}

/** Pick one of the server's sessions (GET /api/sessions summaries); resolves with it, or null. */
export function pickSession(sessions) {
  return dialog("Resume a session", (body, close) => {
    if (!sessions.length) {
      const p = document.createElement("p");
      p.textContent = "The server holds no other session.";
      body.appendChild(p);
      return;
    }
    const list = document.createElement("ul");
    list.className = "browse-list";
    for (const s of sessions) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.className = "entry";
      const frames = s.kind === "video" ? ` · ${s.num_frames} frames` : "";
      const objects = Array.isArray(s.objects) ? ` · ${s.objects.length} objects` : "";
      button.textContent = `${s.name || s.session_id} · ${s.width}×${s.height}${frames}${objects}`;
      button.addEventListener("click", () => close(s));
      li.appendChild(button);
      list.appendChild(li);
    }
    body.appendChild(list);
  });
}

/**
 * Browse --data-root through api.listFiles; resolves with the path of the file picked, or null.
 */
export function browseFiles(api) {
  return dialog("Open from the server's data folder", (body, close) => {
    const where = document.createElement("div");
    where.className = "browse-path";
    const list = document.createElement("ul");
    list.className = "browse-list";
    body.append(where, list);
    const show = async (dir) => {
      list.replaceChildren();
      where.textContent = `/${dir}`;
      let answer;
      try {
        answer = await api.listFiles(dir);
      } catch (error) {
        showError(error, "Cannot list the folder");
        return;
      }
      const entries = [...(answer.entries || [])];
      if (dir) entries.unshift({ name: "..", type: "dir", path: dir.split("/").slice(0, -1).join("/") });
      if (!entries.length) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = "No images, videos or zips here.";
        list.appendChild(li);
      }
      for (const entry of entries) {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.className = `entry ${entry.type}`;
        button.textContent = entry.type === "dir" && entry.name !== ".." ? `${entry.name}/` : entry.name;
        button.title = entry.type === "frames" ? "a folder of JPEG frames: opens as a video" : entry.type;
        button.addEventListener("click", () => (entry.type === "dir" ? show(entry.path) : close(entry.path)));
        li.appendChild(button);
        list.appendChild(li);
      }
    };
    show("");
  });
}
