// Fault injection: a panic, stop or delay button per actor (only when the
// server has `ops.fault_injection` on), each behind a confirmation dialog.
// The native <dialog> traps focus while open; on close, focus goes back to
// the button that opened it (found again by its data attributes, since the
// actor table is redrawn every second).

import { post, describe } from "./api.js";
import { el, byId } from "./dom.js";

const FAULTS = [
  ["panic", "Panic", "panics on its next message; its supervisor restarts it"],
  ["stop", "Stop", "stops after its next message; its supervisor restarts it"],
  ["delay", "Delay", "stalls its next message for the given time"],
];

/** The three buttons of one actor's row. */
export function faultButtons(actor) {
  return el(
    "div",
    { class: "fault-buttons" },
    FAULTS.map(([kind, label]) =>
      el("button", {
        type: "button",
        class: "small danger-outline",
        dataset: { actor, fault: kind },
        "aria-label": `${label} ${actor}`,
        onclick: () => confirmFault(actor, kind),
      }, label),
    ),
  );
}

let pending = null;
let noticeTimer = null;

/** Say what was done in the header's status line for a few seconds. */
function notify(text) {
  const line = byId("connection");
  const before = line.dataset.signedIn || "";
  line.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { line.textContent = before; }, 5000);
}

/** Open the dialog for one fault. */
function confirmFault(actor, kind) {
  const [, label, effect] = FAULTS.find(([k]) => k === kind);
  pending = { actor, kind };
  byId("confirm-title").textContent = `${label} ${actor}?`;
  byId("confirm-text").textContent = `${actor} ${effect}.`;
  byId("confirm-delay").hidden = kind !== "delay";
  byId("confirm-ok").textContent = `${label} ${actor}`;
  byId("confirm-dialog").showModal();
  // The safe choice has focus first: Enter on a stray keypress cancels.
  byId("confirm-cancel").focus();
}

function close() {
  const dialog = byId("confirm-dialog");
  if (dialog.open) dialog.close();
}

/** Focus back on the button that opened the dialog. */
function restoreFocus() {
  if (!pending) return;
  const selector = `button[data-actor="${CSS.escape(pending.actor)}"][data-fault="${pending.kind}"]`;
  document.querySelector(selector)?.focus();
  pending = null;
}

async function inject(event) {
  event.preventDefault();
  if (!pending) return close();
  const { actor, kind } = pending;
  const body = { kind };
  if (kind === "delay") body.delayMs = Number(byId("confirm-delay-ms").value);
  try {
    await post(`/ops/actors/${encodeURIComponent(actor)}/fault`, body);
    // Focus goes back now, not at the dialog's `close` event (a later
    // task): whoever sees the notice finds focus on the button already.
    close();
    restoreFocus();
    notify(`${kind} armed on ${actor}`);
  } catch (error) {
    byId("confirm-text").textContent = describe(error);
  }
}

/** Wire the dialog's buttons once. */
export function setup() {
  byId("confirm-form").addEventListener("submit", inject);
  byId("confirm-cancel").addEventListener("click", close);
  byId("confirm-dialog").addEventListener("close", restoreFocus);
}
