// The events panel: the live stream of GET /ops/events, read with fetch
// (see sse.js). At most MAX_ROWS rows are kept (newest first). The kind
// filter reconnects with `?kinds=<kind>`, so the server does the filtering.
// A dropped stream reconnects after 1 s, doubling to at most 30 s; a
// stream that delivered anything resets the backoff.

import { authHeaders, check, describe, sessionSignal } from "./api.js";
import { el, byId, fill, clock } from "./dom.js";
import { readEvents } from "./sse.js";

const MAX_ROWS = 200;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

let controller = null;
let retryTimer = null;
let backoff = BACKOFF_MIN_MS;

function setState(text) {
  byId("events-state").textContent = text;
}

/** The fields of an event other than the envelope, as "key=value …". */
function summary(payload) {
  const skip = new Set(["seq", "at", "instance", "kind"]);
  return Object.entries(payload)
    .filter(([key]) => !skip.has(key))
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" ");
}

function addRow({ event, data }) {
  let payload = {};
  try {
    payload = JSON.parse(data);
  } catch {
    payload = { data };
  }
  const list = byId("event-list");
  list.prepend(
    el("li", { dataset: { kind: event } },
      el("time", { class: "muted mono", datetime: payload.at || "" }, clock(payload.at)),
      el("span", { class: `kind-tag kind-${event.replace(/[^A-Za-z]/g, "")}` }, event),
      el("span", { class: "event-summary" }, summary(payload)),
      payload.instance ? el("span", { class: "muted small instance" }, payload.instance) : null),
  );
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
}

function scheduleReconnect(reason) {
  setState(`disconnected (${reason}); retrying in ${Math.round(backoff / 1000)} s`);
  retryTimer = setTimeout(connect, backoff);
  backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
}

/** Open (or re-open) the stream with the current kind filter. */
async function connect() {
  clearTimeout(retryTimer);
  controller?.abort();
  const mine = (controller = new AbortController());
  const kind = byId("event-kind").value;
  const path = kind ? `/ops/events?kinds=${encodeURIComponent(kind)}` : "/ops/events";
  setState("connecting…");
  try {
    const signal = AbortSignal.any([mine.signal, sessionSignal()]);
    const response = await check(await fetch(path, { headers: authHeaders({ Accept: "text/event-stream" }), signal, cache: "no-store" }));
    setState(kind ? `live: ${kind}` : "live");
    await readEvents(response.body, (event) => {
      backoff = BACKOFF_MIN_MS;
      addRow(event);
    });
    if (mine === controller) scheduleReconnect("stream ended");
  } catch (error) {
    if (mine.signal.aborted || error.name === "AbortError") return; // stopped or replaced on purpose
    if (error.status === 401) return; // main.js signs out
    scheduleReconnect(describe(error));
  }
}

/** The kinds the filter offers, from /ops/console/config. */
function fillKinds(kinds) {
  const select = byId("event-kind");
  fill(select, el("option", { value: "" }, "all kinds"), kinds.map((k) => el("option", { value: k }, k)));
}

/** Start streaming. Returns stop. */
export function start(config) {
  fillKinds(config.eventKinds || []);
  backoff = BACKOFF_MIN_MS;
  connect();
  return () => {
    clearTimeout(retryTimer);
    controller?.abort();
    controller = null;
    setState("");
  };
}

/** Wire the controls once. */
export function setup() {
  byId("event-kind").addEventListener("change", () => {
    backoff = BACKOFF_MIN_MS;
    if (controller) connect();
  });
  byId("events-clear").addEventListener("click", () => fill(byId("event-list")));
}

export function reset() {
  fill(byId("event-list"));
}
