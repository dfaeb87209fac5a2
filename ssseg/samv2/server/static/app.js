// The labelling app: sessions, drawing, the object list and the wiring of the page. Talks to the server through
// api.js only; prompts.js, playback.js and tools.js hold the other actions.

import { ApiError } from "./api.js";
import { Viewer } from "./canvas.js";
import { cssColor, objectColor, paintOverlay } from "./overlay.js";
import { decodeRle } from "./rle.js";
import { addPoint, clearPrompts, setBox, undo } from "./prompts.js";
import { abandonTracking, cancelTracking, stopPlaying, togglePlay, track } from "./playback.js";
import { arrow, helpTable, installShortcuts } from "./shortcuts.js";
import { $, api, busy, enqueue, hasPrompts, hooks, invalidate, setMasks, state } from "./state.js";
import { clearEverything, everything, exportAs } from "./tools.js";
import * as ui from "./ui.js";
import { FrameStore, paintTimeline } from "./video.js";

const OVERLAY_CACHE = 16;

const viewer = new Viewer($("view"), {
  onPoint: (x, y, label) => addPoint(x, y, label),
  onBox: (box) => setBox(box),
  onHover: (p) => hover(p),
});

// ---------------------------------------------------------------- sessions

async function confirmLeave() {
  if (!state.session || !state.dirty) return true;
  return ui.confirmDialog(
    "Close this session?",
    `"${state.session.name}" has changes that were not exported. Opening another file closes it on the server.`,
    "Close it",
  );
}

async function closeSession() {
  const s = state.session;
  if (!s) return;
  abandonTracking();
  stopPlaying();
  state.session = null;
  state.frames?.dispose();
  viewer.clear();
  await api.closeSession(s.id).catch(() => {}); // expired or gone: nothing to free
}

/**
 * Open a new session with `open()` and switch to it. The current session is closed only once the new one is open,
 * so a refused file leaves the work on screen as it was.
 */
async function switchTo(open, name, restored = false) {
  if (!(await confirmLeave())) return;
  let info;
  try {
    info = await busy(open());
  } catch (error) {
    ui.showError(error, `Cannot open ${name}`);
    return;
  }
  await closeSession();
  startSession(info, restored ? info.name || name : name, restored ? info.objects : null);
}

async function openFile(file) {
  if (!file) return;
  const note = ui.toast(`Uploading ${file.name}…`, "info", 600000);
  const progress = (f) => (note.textContent = `Uploading ${file.name}… ${Math.round(100 * f)}%`);
  try {
    await switchTo(() => api.openUpload(file, progress), file.name);
  } finally {
    note.remove();
  }
}

async function openServerFile() {
  const path = await ui.browseFiles(api);
  if (path) await switchTo(() => api.openPath(path), path);
}

/** Resume a session the server still holds (after a reload): its objects, names and prompts come back; the masks
 * of each frame are fetched when the frame is shown. */
async function resumeSession() {
  let sessions;
  try {
    sessions = (await busy(api.listSessions())).sessions || [];
  } catch (error) {
    ui.showError(error, "Cannot list the sessions");
    return;
  }
  const current = state.session && state.session.id;
  const picked = await ui.pickSession(sessions.filter((s) => s.session_id !== current));
  if (picked) await switchTo(() => api.session(picked.session_id), picked.name || picked.session_id, true);
}

/** Objects and prompts of GET /api/sessions/{id} into the page's state. */
function restoreObjects(objects) {
  for (const o of objects) {
    state.objects.push({ id: o.object_id, name: o.name || `object ${o.object_id}`, visible: true });
    state.nextId = Math.max(state.nextId, o.object_id + 1);
    for (const p of o.prompts || []) {
      const prompt = { points: p.points || [], labels: p.labels || [], box: p.box || null };
      if (prompt.points.length || prompt.box) state.prompts.set(`${p.frame}:${o.object_id}`, prompt);
    }
  }
  if (state.objects.length) state.selected = state.objects[0].id;
}

/** Masks of frame t from the server (resumed sessions: the page did not see them arrive). */
async function fetchMasks(t) {
  const s = state.session;
  state.fetched.add(t);
  try {
    const answer = await busy(api.frameMasks(s.id, t));
    if (state.session !== s || state.masks.has(t)) return;
    setMasks(t, answer.objects || [], true);
    if (state.frame === t) refresh();
  } catch (error) {
    state.fetched.delete(t);
    ui.showError(error, `Cannot load the masks of frame ${t}`);
  }
}

function startSession(info, name, restored = null) {
  Object.assign(state, {
    session: {
      id: info.session_id,
      kind: info.kind,
      width: info.width,
      height: info.height,
      numFrames: info.num_frames || 1,
      name,
    },
    frame: 0,
    objects: [],
    selected: null,
    nextId: 1,
    prompts: new Map(),
    resync: new Set(),
    history: [],
    masks: new Map(),
    version: 0,
    overlays: new Map(),
    everything: null,
    dirty: false,
    fetched: restored ? new Set() : null, // resumed sessions: frames whose masks were asked for
  });
  state.frames = new FrameStore(api, info.session_id, state.session.numFrames);
  const video = info.kind === "video";
  document.body.dataset.kind = info.kind;
  $("videobar").hidden = !video;
  $("image-tools").hidden = video;
  $("empty").hidden = true;
  const frames = video ? ` · ${info.num_frames} frames` : "";
  $("session-name").textContent = `${name} · ${info.width}×${info.height}${frames}`;
  document.title = `${name} · ssseg`;
  $("slider").max = String(state.session.numFrames - 1);
  $("slider").value = "0";
  if (restored && restored.length && typeof restored[0] === "object") restoreObjects(restored);
  if (!state.objects.length) newObject();
  viewer.fitted = true;
  showFrame(0);
}

// ---------------------------------------------------------------- frames and drawing

async function showFrame(t) {
  const s = state.session;
  if (!s) return;
  t = Math.max(0, Math.min(s.numFrames - 1, t));
  state.frame = t;
  $("slider").value = String(t);
  updateFrameLabel();
  try {
    const bitmap = await busy(state.frames.get(t));
    if (state.session !== s || state.frame !== t) return; // superseded by a later request
    viewer.setImage(bitmap);
    refresh();
    if (state.fetched && !state.fetched.has(t) && !state.masks.has(t)) fetchMasks(t);
    state.frames.prefetch(t);
  } catch (error) {
    if (state.session === s) ui.showError(error, `Cannot load frame ${t}`);
  }
}

/** Frame navigation by the user pauses playback (one looks at the frame one went to). */
function step(delta) {
  if (!state.session) return;
  stopPlaying();
  showFrame(state.frame + delta);
}

function jump(t) {
  if (!state.session) return;
  stopPlaying();
  showFrame(t);
}

function updateFrameLabel() {
  const s = state.session;
  if (!s) return;
  const entry = state.masks.get(state.frame);
  const stale = entry && entry.version < state.version && !hasPrompts(state.frame);
  $("frame-label").textContent = `${state.frame + 1} / ${s.numFrames}`;
  $("stale").hidden = !stale;
}

/** The overlay of frame t: every visible object's mask, the selected one on top and more opaque. */
function overlayFor(t) {
  if (!state.showMasks) return null;
  if (state.overlays.has(t)) return state.overlays.get(t);
  const entry = state.masks.get(t);
  if (!entry) return null;
  const { width, height } = state.session;
  const layers = [];
  const ordered = [...state.objects].sort((a, b) => (a.id === state.selected) - (b.id === state.selected));
  for (const o of ordered) {
    const m = entry.objects.get(o.id);
    if (!m || !o.visible) continue;
    try {
      m.mask ||= decodeRle(m.rle);
    } catch (error) {
      ui.showError(error, `Mask of object ${o.id} on frame ${t} is unreadable`);
      entry.objects.delete(o.id);
      continue;
    }
    if (m.rle.size[0] !== height || m.rle.size[1] !== width) continue;
    layers.push({ mask: m.mask, color: objectColor(o.id), fill: o.id === state.selected ? 0.45 : 0.32 });
  }
  const thickness = Math.max(1, Math.round(1.5 * viewer.imagePixelsPerScreenPixel()));
  const canvas = layers.length ? paintOverlay(width, height, layers, thickness) : null;
  state.overlays.set(t, canvas);
  while (state.overlays.size > OVERLAY_CACHE) state.overlays.delete(state.overlays.keys().next().value);
  return canvas;
}

function promptsFor(t) {
  const out = [];
  for (const o of state.objects) {
    const p = state.prompts.get(`${t}:${o.id}`);
    if (p && o.visible) out.push({ ...p, color: objectColor(o.id), selected: o.id === state.selected });
  }
  return out;
}

/** Redraw the view, the object list, the timeline and the labels. */
function refresh() {
  if (!state.session) return;
  const t = state.frame;
  viewer.setLayers({
    overlay: overlayFor(t),
    extra: state.showMasks && state.everything ? state.everything.canvas : null,
    prompts: promptsFor(t),
  });
  renderObjects();
  renderTimeline();
  updateFrameLabel();
}

let timelinePending = false;

/** Repaint the timeline at the next animation frame (at most once a frame, however many masks arrive). */
function renderTimeline() {
  if (timelinePending) return;
  timelinePending = true;
  requestAnimationFrame(() => {
    timelinePending = false;
    const s = state.session;
    if (!s || s.kind !== "video") return;
    const prompted = new Set([...state.prompts.keys()].map((key) => Number(key.split(":")[0])));
    const frames = Array.from({ length: s.numFrames }, (_, t) => {
      const entry = state.masks.get(t);
      return {
        tracked: Boolean(entry && entry.objects.size),
        stale: Boolean(entry && entry.version < state.version),
        prompted: prompted.has(t),
      };
    });
    paintTimeline($("timeline"), frames, state.frame);
  });
}

function renderObjects() {
  const list = $("object-list");
  list.replaceChildren();
  const entry = state.masks.get(state.frame);
  const area = state.session ? state.session.width * state.session.height : 1;
  state.objects.forEach((o, index) => {
    const li = document.createElement("li");
    li.className = `object${o.id === state.selected ? " selected" : ""}${o.visible ? "" : " hidden-object"}`;
    li.dataset.id = String(o.id);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = cssColor(objectColor(o.id));
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = o.name;
    name.title = "Double-click to rename";
    name.addEventListener("dblclick", () => renameObject());
    const meta = document.createElement("span");
    meta.className = "meta";
    const m = entry && entry.objects.get(o.id);
    if (m) meta.textContent = `${((100 * (m.area ?? 0)) / area).toFixed(1)}%`;
    if (m && m.score !== undefined && m.score !== null) meta.title = `score ${Number(m.score).toFixed(3)}`;
    const index1 = document.createElement("span");
    index1.className = "index";
    index1.textContent = index < 9 ? String(index + 1) : "";
    const eye = iconButton(o.visible ? "◉" : "○", o.visible ? "Hide (V)" : "Show (V)", () => toggleVisible(o.id));
    const rename = iconButton("✎", "Rename (R)", () => renameObject(o.id));
    const remove = iconButton("✕", "Remove (Delete)", () => removeObject(o.id));
    remove.classList.add("danger");
    li.append(index1, swatch, name, meta, eye, rename, remove);
    li.addEventListener("click", () => select(o.id));
    list.appendChild(li);
  });
}

function iconButton(text, title, action) {
  const b = document.createElement("button");
  b.className = "icon";
  b.textContent = text;
  b.title = title;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", (e) => {
    e.stopPropagation();
    action();
  });
  return b;
}

function hover(p) {
  $("cursor").textContent = p ? `x ${Math.floor(p[0])}  y ${Math.floor(p[1])}` : "";
}

// ---------------------------------------------------------------- objects

function newObject() {
  if (!state.session) return;
  const id = state.nextId++;
  state.objects.push({ id, name: `object ${id}`, visible: true });
  select(id);
}

function select(id) {
  state.selected = id;
  invalidate();
  refresh();
}

async function renameObject(id = state.selected) {
  const o = state.objects.find((x) => x.id === id);
  if (!o) return;
  const name = (await ui.askText(`Rename object ${o.id}`, o.name))?.trim();
  if (!name || name === o.name || !state.session) return;
  const sid = state.session.id;
  try {
    // The server keeps the name: it becomes the object's COCO category.
    await enqueue(() => busy(api.renameObject(sid, id, name)));
    o.name = name;
    state.dirty = true;
  } catch (error) {
    ui.showError(error, "Cannot rename the object");
  }
  renderObjects();
}

function toggleVisible(id = state.selected) {
  const o = state.objects.find((x) => x.id === id);
  if (!o) return;
  o.visible = !o.visible;
  invalidate();
  refresh();
}

async function removeObject(id = state.selected) {
  const o = state.objects.find((x) => x.id === id);
  if (!o || !state.session) return;
  const known = [...state.prompts.keys()].some((key) => key.endsWith(`:${id}`));
  const question = `Remove "${o.name}" and its masks on every frame?`;
  if (known && !(await ui.confirmDialog("Remove object?", question, "Remove"))) return;
  const sid = state.session.id;
  try {
    if (known) await enqueue(() => busy(api.removeObject(sid, id)));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      ui.showError(error, "Cannot remove the object");
      return;
    }
  }
  state.objects = state.objects.filter((x) => x.id !== id);
  for (const key of [...state.prompts.keys()]) if (key.endsWith(`:${id}`)) state.prompts.delete(key);
  for (const entry of state.masks.values()) entry.objects.delete(id);
  state.history = state.history.filter((h) => h.k !== id);
  if (state.selected === id) state.selected = state.objects.length ? state.objects[0].id : null;
  state.dirty = true;
  invalidate();
  refresh();
}

// ---------------------------------------------------------------- wiring

function showHelp() {
  ui.dialog("Keyboard and mouse", (body) => body.appendChild(helpTable()));
}

const actions = {
  newObject,
  selectIndex: (e) => {
    const o = state.objects[Number(e.key) - 1];
    if (o) select(o.id);
  },
  cycleObject: (e) => {
    if (!state.objects.length) return;
    const i = state.objects.findIndex((o) => o.id === state.selected);
    const n = state.objects.length;
    select(state.objects[(i + (e.shiftKey ? n - 1 : 1)) % n].id);
  },
  undo,
  clearPrompts,
  removeObject: () => removeObject(),
  renameObject: () => renameObject(),
  toggleVisible: () => toggleVisible(),
  toggleMasks: () => {
    state.showMasks = !state.showMasks;
    invalidate();
    refresh();
    ui.toast(state.showMasks ? "Masks shown" : "Masks hidden");
  },
  everything,
  clearEverything,
  step: (e) => step(arrow(e)),
  jump: (e) => state.session && jump(e.key === "Home" ? 0 : state.session.numFrames - 1),
  togglePlay,
  track,
  escape: () => {
    if (ui.dialogOpen()) ui.closeDialog();
    else if (state.tracking) cancelTracking();
    else if (state.playing) stopPlaying();
  },
  fit: () => viewer.fit(),
  zoomKey: (e) => viewer.zoom(e.key === "-" ? 1 / 1.25 : 1.25),
  open: () => $("file-input").click(),
  help: showHelp,
};

function wire() {
  installShortcuts(actions, ui.dialogOpen);
  $("open-file").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    openFile(file);
  });
  $("open-server").addEventListener("click", openServerFile);
  $("resume").addEventListener("click", resumeSession);
  $("add-object").addEventListener("click", newObject);
  $("undo").addEventListener("click", undo);
  $("everything").addEventListener("click", everything);
  $("everything-clear").addEventListener("click", clearEverything);
  $("export-coco").addEventListener("click", () => exportAs("coco"));
  $("export-davis").addEventListener("click", () => exportAs("davis"));
  $("help-button").addEventListener("click", showHelp);
  $("play").addEventListener("click", togglePlay);
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("slider").addEventListener("input", (e) => jump(Number(e.target.value)));
  $("track").addEventListener("click", track);
  $("cancel").addEventListener("click", cancelTracking);
  window.addEventListener("resize", () => renderTimeline());
  window.addEventListener("beforeunload", (e) => {
    if (state.dirty) e.preventDefault();
  });
  // Drop a file anywhere on the page to open it.
  window.addEventListener("dragover", (e) => {
    e.preventDefault();
    document.body.classList.add("dropping");
  });
  window.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) document.body.classList.remove("dropping");
  });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dropping");
    const file = e.dataTransfer.files[0];
    if (file) openFile(file);
  });
}

async function start() {
  Object.assign(hooks, { viewer, refresh, showFrame, newObject, renderTimeline });
  wire();
  stopPlaying(); // sets the play button
  document.body.dataset.pending = "0";
  document.body.dataset.ready = "1"; // wired (the health check below may still wait for a token)
  try {
    const health = await api.health();
    $("server-info").textContent = [health.model, health.device].filter(Boolean).join(" · ");
    $("open-server").hidden = !health.data_root; // files can be picked from --data-root
    if (health.sessions) ui.toast(`The server holds ${health.sessions} session(s): Sessions… resumes one.`);
  } catch (error) {
    ui.showError(error, "Server not ready");
  }
}

start();
