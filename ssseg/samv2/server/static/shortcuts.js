// Keyboard shortcuts: one table drives both the key handling and the help overlay, so they cannot disagree.

/** [keys shown in the help, description, matcher(event) -> bool, action name] */
export const SHORTCUTS = [
  ["Click", "Positive point (adds to the selected object)", null, null],
  ["Shift+Click / Right click", "Negative point", null, null],
  ["Drag", "Box around the object", null, null],
  ["Wheel / Alt+Drag / Middle drag", "Zoom at the cursor / pan", null, null],
  ["N", "New object", (e) => key(e, "n"), "newObject"],
  ["1 … 9", "Select object 1 … 9 of the list", (e) => /^[1-9]$/.test(e.key) && !modified(e), "selectIndex"],
  ["Tab / Shift+Tab", "Next / previous object", (e) => e.key === "Tab", "cycleObject"],
  ["Ctrl+Z / Z", "Undo the last click or box", (e) => key(e, "z", true), "undo"],
  ["C", "Clear the selected object's prompts on this frame", (e) => key(e, "c"), "clearPrompts"],
  ["Delete / Backspace", "Remove the selected object", (e) => ["Delete", "Backspace"].includes(e.key), "removeObject"],
  ["R / F2", "Rename the selected object", (e) => key(e, "r") || e.key === "F2", "renameObject"],
  ["V", "Hide / show the selected object", (e) => key(e, "v"), "toggleVisible"],
  ["M", "Hide / show all masks", (e) => key(e, "m"), "toggleMasks"],
  ["E", "Segment everything (images)", (e) => key(e, "e") && !e.shiftKey, "everything"],
  ["Shift+E", "Clear the segment-everything masks", (e) => key(e, "e") && e.shiftKey, "clearEverything"],
  ["← / → / A / D", "Previous / next frame (Shift: 10 frames)", (e) => arrow(e) !== 0, "step"],
  ["Home / End", "First / last frame", (e) => e.key === "Home" || e.key === "End", "jump"],
  ["Space", "Play / pause", (e) => e.key === " ", "togglePlay"],
  ["T", "Track the objects through the video from this frame", (e) => key(e, "t"), "track"],
  ["Esc", "Cancel tracking / close a dialog", (e) => e.key === "Escape", "escape"],
  ["F / 0", "Fit the image to the window", (e) => key(e, "f") || e.key === "0", "fit"],
  ["+ / -", "Zoom in / out", (e) => ["+", "=", "-"].includes(e.key), "zoomKey"],
  ["O", "Open a file", (e) => key(e, "o") && !e.ctrlKey, "open"],
  ["?", "This help", (e) => e.key === "?", "help"],
];

const modified = (e) => e.ctrlKey || e.metaKey || e.altKey;

function key(e, letter, ctrlAllowed = false) {
  if (e.altKey || ((e.ctrlKey || e.metaKey) && !ctrlAllowed)) return false;
  return e.key.toLowerCase() === letter;
}

/** -1 / +1 (x10 with Shift) for the frame-stepping keys, 0 otherwise. */
export function arrow(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return 0;
  const k = e.key.toLowerCase();
  const sign = k === "arrowleft" || k === "a" ? -1 : k === "arrowright" || k === "d" ? 1 : 0;
  return sign * (e.shiftKey ? 10 : 1);
}

/** Route key presses to actions[name](event); typing in a field or a dialog is left alone. */
export function installShortcuts(actions, isDialogOpen) {
  window.addEventListener("keydown", (e) => {
    const target = e.target;
    const typing = target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    if (isDialogOpen()) {
      if (e.key === "Escape") actions.escape(e);
      return;
    }
    if (typing && e.key !== "Escape") return;
    for (const [, , matches, name] of SHORTCUTS) {
      if (matches && matches(e)) {
        e.preventDefault();
        actions[name](e);
        return;
      }
    }
  });
}

/** The help overlay's table. */
export function helpTable() {
  const table = document.createElement("table");
  table.className = "help";
  for (const [keys, what] of SHORTCUTS) {
    const row = table.insertRow();
    const k = row.insertCell();
    for (const [i, part] of keys.split(" / ").entries()) {
      if (i) k.append(" / ");
      const kbd = document.createElement("kbd");
      kbd.textContent = part;
      k.appendChild(kbd);
    }
    row.insertCell().textContent = what;
  }
  return table;
}
