// "Retry all" and "Discard all" for the failed jobs (POST /jobs/bulk), each
// behind a confirmation dialog that says how many jobs it takes: a dry run
// counts them first. The server takes at most `limit` jobs per call and
// says whether more are left, so the page calls again until none are.

import { post, describe } from "./api.js";
import { byId, showError } from "./dom.js";

const ACTIONS = {
  retry: { label: "Retry", effect: "goes back to pending with a fresh attempt budget" },
  delete: { label: "Discard", effect: "is deleted with its history" },
};

/** Failed jobs, the only ones the buttons act on. */
const FILTER = { status: "failed" };

/** At most this many calls per confirmation (1000 jobs each). */
const MAX_CALLS = 100;

let pending = null;
let redraw = async () => {};

/** Count the failed jobs, then ask before `action` ("retry" or "delete"). */
async function confirmBulk(action) {
  const { label, effect } = ACTIONS[action];
  let count;
  try {
    count = (await post("/jobs/bulk", { action, filter: FILTER, dryRun: true })).matched;
  } catch (error) {
    showError(byId("queue-error"), describe(error));
    return;
  }
  if (count === 0) {
    showError(byId("queue-error"), "no failed jobs");
    return;
  }
  pending = action;
  const jobs = `${count} failed job${count === 1 ? "" : "s"}`;
  byId("bulk-title").textContent = `${label} ${jobs}?`;
  byId("bulk-text").textContent = `Each of the ${jobs} ${effect}.`;
  byId("bulk-ok").textContent = `${label} ${jobs}`;
  byId("bulk-dialog").showModal();
  // The safe choice has focus first: Enter on a stray keypress cancels.
  byId("bulk-cancel").focus();
}

function close() {
  const dialog = byId("bulk-dialog");
  if (dialog.open) dialog.close();
}

async function apply(event) {
  event.preventDefault();
  if (!pending) return close();
  const action = pending;
  const ok = byId("bulk-ok");
  ok.disabled = true;
  try {
    for (let call = 0; call < MAX_CALLS; call++) {
      const answer = await post("/jobs/bulk", { action, filter: FILTER, limit: 1000 });
      if (!answer.more) break;
    }
    close();
    showError(byId("queue-error"), "");
  } catch (error) {
    byId("bulk-text").textContent = describe(error);
  } finally {
    ok.disabled = false;
  }
  await redraw();
}

/** Show the buttons only for the failed list, on a server that has the route. */
export function show(visible) {
  byId("bulk-buttons").hidden = !visible;
}

/** Wire the buttons and the dialog once; `after` redraws the queue panel. */
export function setup(after) {
  redraw = after;
  byId("retry-all").addEventListener("click", () => confirmBulk("retry"));
  byId("discard-all").addEventListener("click", () => confirmBulk("delete"));
  byId("bulk-form").addEventListener("submit", apply);
  byId("bulk-cancel").addEventListener("click", close);
  byId("bulk-dialog").addEventListener("close", () => {
    if (pending) byId(pending === "retry" ? "retry-all" : "discard-all").focus();
    pending = null;
  });
}
