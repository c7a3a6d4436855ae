// The actor tree panel: polls GET /ops/actors every second and shows one
// row per actor, indented by depth: its mailbox (depth, wait p50/p99),
// handling p99, dead letters (the last few in the cell's title). Messages per second come from the
// difference between two polls' `messagesHandled` (the server keeps only
// the running count). A restart (its `restarts` rose, or its ractor id
// changed) or an escalation marks the row and adds a badge that fades.

import { get, describe } from "./api.js";
import { el, byId, fill, showError, num, clock, stamp, every } from "./dom.js";
import { faultButtons } from "./faults.js";

const POLL_MS = 1000;
/** How long a restart/escalation mark stays (matches the CSS fade). */
const MARK_MS = 6000;

/** The previous poll, per actor: for rates and to notice restarts. */
let previous = new Map();
/** Actors marked recently: name → { since, until, text }. */
const marks = new Map();
let faultsOn = false;

/** The tree as a list of [node, depth], depth-first, root first. */
function flatten(node, depth = 0, out = []) {
  out.push([node, depth]);
  for (const child of node.children || []) flatten(child, depth + 1, out);
  return out;
}

/** Messages per second since the previous poll (null on the first). */
function rate(node, now) {
  const before = previous.get(node.name);
  if (!before || node.messagesHandled < before.handled) return null;
  const seconds = (now - before.at) / 1000;
  return seconds > 0 ? (node.messagesHandled - before.handled) / seconds : null;
}

/** Mark an actor whose restarts rose, whose id changed, or that escalated. */
function notice(node, now) {
  const before = previous.get(node.name);
  if (!before) return;
  if (node.status === "escalated" && before.status !== "escalated") {
    marks.set(node.name, { since: now, until: now + MARK_MS, text: "escalated" });
  } else if (node.restarts > before.restarts) {
    const n = node.restarts - before.restarts;
    marks.set(node.name, { since: now, until: now + MARK_MS, text: n > 1 ? `restarted ×${n}` : "restarted" });
  } else if (before.id && node.id && before.id !== node.id && node.status === "running") {
    marks.set(node.name, { since: now, until: now + MARK_MS, text: "new id" });
  }
}

function statusCell(node) {
  return el("td", { class: "status", dataset: { label: "Status" } }, el("span", { class: `pill ${node.status}` }, node.status));
}

function failureCell(node) {
  const failure = node.lastFailure;
  if (!failure) return el("td", { class: "failure muted", dataset: { label: "Last failure" } }, "–");
  const when = failure.at ? `${clock(failure.at)} ` : "";
  return el("td", { class: "failure", title: failure.reason, dataset: { label: "Last failure" } }, `${when}${failure.reason}`);
}

function nameCell(node, depth, mark) {
  return el(
    "th",
    { scope: "row", class: `name depth-${Math.min(depth, 4)}` },
    el("span", { class: "actor-name" }, node.name),
    el("span", { class: "kind muted" }, node.kind),
    mark ? el("span", { class: "badge", role: "status" }, mark.text) : null,
  );
}

/** Wait in the mailbox, `p50 / p99` ms. */
function waitCell(node) {
  const wait = node.wait;
  const text = wait ? `${num(wait.p50Ms, 1)} / ${num(wait.p99Ms, 1)}` : "–";
  return el("td", { class: `num wait ${wait ? "" : "muted"}`, dataset: { label: "Wait p50/p99 ms" } }, text);
}

/** Dead letters: the count; the last few (actor, message type, reason, time) as its title. */
function deadCell(node) {
  const recent = node.recentDeadLetters || [];
  const title = recent.map((d) => `${clock(d.at)} ${d.message} ${d.reason}`).join("\n");
  const attrs = { class: `num dead ${node.deadLetters ? "warn" : ""}`, dataset: { label: "Dead letters" } };
  if (title) attrs.title = title;
  return el("td", attrs, num(node.deadLetters));
}

/** One actor's row. */
function row(node, depth, now) {
  const mark = marks.get(node.name);
  const p99 = node.handling ? node.handling.p99Ms : null;
  const budget = node.restartBudgetLeft;
  const tr = el(
    "tr",
    { dataset: { actor: node.name }, class: [mark ? "marked" : "", node.status !== "running" ? "unhealthy" : ""].join(" ") },
    nameCell(node, depth, mark),
    statusCell(node),
    el("td", { class: "num backlog", dataset: { label: "Mailbox" } }, num(node.mailboxBacklog)),
    waitCell(node),
    el("td", { class: "num rate", dataset: { label: "Msg/s" } }, num(rate(node, now), 1)),
    el("td", { class: "num p99", dataset: { label: "Handling p99 ms" } }, num(p99, 1)),
    deadCell(node),
    el("td", { class: "num restarts", dataset: { label: "Restarts" } }, num(node.restarts)),
    el("td", { class: `num budget ${budget === 0 ? "exhausted" : ""}`, dataset: { label: "Budget" } }, budget === null ? "–" : num(budget)),
    failureCell(node),
  );
  if (faultsOn) tr.append(el("td", { class: "faults", dataset: { label: "Fault" } }, node.supervisor ? faultButtons(node.name) : null));
  // The row is redrawn every poll: start its fade where the last one was
  // (a negative delay, set through the CSSOM, which the CSP allows).
  if (mark) tr.style.setProperty("--mark-delay", `${mark.since - now}ms`);
  return tr;
}

async function poll() {
  try {
    const tree = await get("/ops/actors");
    const now = Date.now();
    const flat = flatten(tree);
    for (const [node] of flat) notice(node, now);
    for (const [name, mark] of marks) if (mark.until < now) marks.delete(name);
    // Keep the focused fault button focused across the redraw (keyboard users).
    const focused = document.activeElement?.dataset?.fault ? document.activeElement.dataset : null;
    fill(byId("actors-body"), flat.map(([node, depth]) => row(node, depth, now)));
    if (focused) byId("actors-body").querySelector(`button[data-actor="${CSS.escape(focused.actor)}"][data-fault="${focused.fault}"]`)?.focus();
    previous = new Map(flat.map(([node]) => [node.name, { handled: node.messagesHandled, restarts: node.restarts, status: node.status, id: node.id, at: now }]));
    showError(byId("actors-error"), "");
    stamp(byId("actors-updated"));
  } catch (error) {
    showError(byId("actors-error"), describe(error));
  }
}

/** Start polling; `config.faultInjection` adds the fault column. Returns stop. */
export function start(config) {
  faultsOn = config.faultInjection;
  document.querySelectorAll(".faults-col").forEach((th) => (th.hidden = !faultsOn));
  return every(POLL_MS, poll);
}

/** Forget everything (sign-out). */
export function reset() {
  previous = new Map();
  marks.clear();
  fill(byId("actors-body"));
}
