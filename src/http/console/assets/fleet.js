// The fleet panel: GET /ops/cluster every 5 s lists the live instances;
// choosing one shows its actor tree (GET /ops/cluster/{id}/actors: this
// instance live, another from its last heartbeat's snapshot), refreshed
// with the list.

import { get, describe } from "./api.js";
import { el, byId, fill, showError, stamp, every, age } from "./dom.js";

const POLL_MS = 5000;
let chosen = null;
let me = null;

function instanceItem(instance) {
  const pool = instance.pool ? `${instance.pool.busy}/${instance.pool.size} busy` : "pool ?";
  return el("li", { dataset: { instance: instance.id }, class: instance.id === chosen ? "chosen" : "" },
    el("button", { type: "button", class: "link", "aria-pressed": String(instance.id === chosen), onclick: () => choose(instance.id) },
      el("span", { class: "mono" }, instance.id)),
    instance.id === me ? el("span", { class: "pill running" }, "this one") : null,
    el("span", { class: `pill ${instance.ready ? "running" : "down"}` }, instance.ready ? "ready" : "not ready"),
    el("span", { class: "muted small" }, `${instance.host} · v${instance.version} · seen ${age(instance.ageMs / 1000)} ago · ${pool} · ${instance.jobs.length} jobs`));
}

/** A compact tree: name, status, restarts, backlog. */
function treeRows(node, depth = 0, out = []) {
  out.push(el("tr", {},
    el("th", { scope: "row", class: `name depth-${Math.min(depth, 4)}` }, node.name),
    el("td", {}, el("span", { class: `pill ${node.status}` }, node.status)),
    el("td", { class: "num" }, node.restarts),
    el("td", { class: "num" }, node.mailboxBacklog)));
  for (const child of node.children || []) treeRows(child, depth + 1, out);
  return out;
}

async function drawTree() {
  const box = byId("instance-tree");
  if (!chosen) return;
  try {
    const answer = await get(`/ops/cluster/${encodeURIComponent(chosen)}/actors`);
    fill(box,
      el("h3", {}, "Tree of ", el("span", { class: "mono" }, answer.instance),
        el("span", { class: "muted small" }, answer.snapshotAgeMs ? ` (snapshot ${age(answer.snapshotAgeMs / 1000)} old)` : " (live)")),
      el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, ["Actor", "Status", "Restarts", "Backlog"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, treeRows(answer.tree)))));
    box.hidden = false;
  } catch (error) {
    showError(byId("fleet-error"), describe(error));
  }
}

function choose(id) {
  chosen = id;
  poll();
}

async function poll() {
  try {
    const cluster = await get("/ops/cluster");
    me = cluster.self;
    fill(byId("instance-list"), cluster.instances.map(instanceItem));
    showError(byId("fleet-error"), "");
    stamp(byId("fleet-updated"));
    await drawTree();
  } catch (error) {
    showError(byId("fleet-error"), describe(error));
  }
}

export function start() {
  return every(POLL_MS, poll);
}

export function reset() {
  chosen = null;
  fill(byId("instance-list"));
  fill(byId("instance-tree"));
  byId("instance-tree").hidden = true;
}
