// The queue panel.
// - Counts: GET /jobs/stats every 2 s, with the job types that wait
//   because no live instance handles them (`unhandledTypes`).
// - Charts: depth (pending + processing) and throughput (completions per
//   minute, from the rise of `completed` over the last 20 s of samples) over
//   the last 10 minutes (or since the page opened, if that is shorter). The history is sampled by this page since it opened
//   (at most WINDOW_MS / STATS_MS points), not kept by the server.
// - A job list by status (failed by default, with Retry, and "Retry all" /
//   "Discard all" behind a confirmation: bulk.js), every 5 s and
//   after each action; clicking a job shows its attempt history
//   (GET /jobs/{id}).
// - Job controls of #18 (cancel, pause/resume) appear only when the
//   server's OpenAPI document has their routes, so this page works before
//   and after them.

import { get, post, call, describe, sessionSignal } from "./api.js";
import { el, byId, fill, showError, num, age, clock, stamp, every } from "./dom.js";
import { draw } from "./chart.js";
import * as bulk from "./bulk.js";

const STATS_MS = 2000;
const JOBS_MS = 5000;
const WINDOW_MS = 10 * 60 * 1000;

let samples = [];
let controls = { pauses: false, cancel: false, bulk: false, limits: false };

function counts(stats) {
  // Each term and its value in a <div> (allowed in <dl>): one grid cell per pair.
  const item = (term, value, cls = "") => el("div", { class: "count" }, el("dt", {}, term), el("dd", { class: cls, dataset: { count: term } }, value));
  return [
    item("waiting", num(stats.waiting ?? 0)),
    item("pending", num(stats.pending)),
    item("processing", num(stats.processing)),
    item("completed", num(stats.completed)),
    item("failed", num(stats.failed), stats.failed > 0 ? "bad" : ""),
    item("cancelled", num(stats.cancelled)),
    item("done last min", num(stats.completedLastMinute)),
    item("most late", age(stats.oldestPendingAgeSeconds)),
    unhandled(item, stats.unhandledTypes || []),
    registered(item, stats.registeredTypes || []),
  ];
}

/** Pending job types no live instance handles: they wait for one (a rolling deploy). */
function unhandled(item, types) {
  const cell = item("no handler", types.length ? types.join(", ") : "none", types.length ? "bad" : "");
  cell.title = types.length ? "Jobs of these types wait until an instance that handles them is live" : "";
  return cell;
}

/** The job types some live instance handles: what an enqueue accepts. */
function registered(item, types) {
  const cell = item("job types", types.length ? types.join(", ") : "none");
  cell.title = "The job types some live instance handles (POST /jobs accepts these)";
  return cell;
}

/**
 * How far back a throughput point looks: one minute, as the "done last min"
 * count beside the chart, so the two agree once the page has a minute of
 * samples (before that, the rate is over the samples it has).
 */
const RATE_SPAN_MS = 60000;

/** Add a sample; throughput is completions over the last RATE_SPAN_MS. */
function record(stats, now) {
  const base = samples.find((s) => s.t >= now - RATE_SPAN_MS);
  let perMinute = null;
  if (base && now > base.t) {
    // Pruning removes completed jobs, so the count can fall: clamp at 0.
    perMinute = (Math.max(0, stats.completed - base.completed) * 60000) / (now - base.t);
  }
  samples.push({ t: now, completed: stats.completed, depth: stats.pending + stats.processing, perMinute });
  samples = samples.filter((s) => s.t >= now - WINDOW_MS);
}

function drawCharts() {
  const since = samples.length ? samples[0].t : Date.now();
  draw(byId("chart-depth"), samples.map((s) => ({ t: s.t, v: s.depth })), since, WINDOW_MS, "Queue depth");
  const rates = samples.filter((s) => s.perMinute !== null).map((s) => ({ t: s.t, v: s.perMinute }));
  draw(byId("chart-throughput"), rates, since, WINDOW_MS, "Jobs completed per minute");
}

async function pollStats() {
  try {
    const stats = await get("/jobs/stats");
    record(stats, Date.now());
    fill(byId("queue-counts"), counts(stats));
    drawCharts();
    showError(byId("queue-error"), "");
    stamp(byId("queue-updated"));
  } catch (error) {
    showError(byId("queue-error"), describe(error));
  }
}

/** Run a job action, then redraw the list (and the open job, if any). */
async function act(path, button) {
  button.disabled = true;
  try {
    await post(path);
    showError(byId("queue-error"), "");
  } catch (error) {
    showError(byId("queue-error"), describe(error));
  }
  await Promise.all([pollJobs(), pollStats()]);
}

function jobButtons(job) {
  const id = encodeURIComponent(job.id);
  const buttons = [];
  if (job.status === "failed") {
    buttons.push(el("button", { type: "button", class: "small retry", "aria-label": `Retry job ${job.id}`, onclick: (e) => act(`/jobs/${id}/retry`, e.currentTarget) }, "Retry"));
  }
  if (controls.cancel && ["waiting", "pending", "processing"].includes(job.status)) {
    buttons.push(el("button", { type: "button", class: "small cancel danger-outline", "aria-label": `Cancel job ${job.id}`, onclick: (e) => act(`/jobs/${id}/cancel`, e.currentTarget) }, "Cancel"));
  }
  return buttons;
}

function jobItem(job) {
  return el(
    "li",
    { dataset: { job: job.id, status: job.status } },
    el("button", { type: "button", class: "link job-open", "aria-label": `Show job ${job.id}`, onclick: () => showJob(job.id) },
      el("span", { class: "job-type" }, job.type),
      el("span", { class: "muted mono" }, job.id.slice(-8)),
    ),
    el("span", { class: "job-meta muted" }, `attempts ${job.attempts}/${job.maxAttempts} · ${when(job)}`),
    job.lastError ? el("span", { class: "job-error", title: job.lastError }, job.lastError) : null,
    el("span", { class: "job-actions" }, jobButtons(job)),
  );
}

/** A pending job's due time; any other job's last change. */
function when(job) {
  return job.status === "pending" ? `due ${clock(job.runAt)}` : clock(job.updatedAt);
}

/** What a job is and holds, for its detail box (absent fields left out). */
function jobFacts(job) {
  const facts = [
    ["status", job.status + (job.cancelRequested && job.status === "processing" ? " (asked to stop)" : "")],
    ["attempts", `${job.attempts}/${job.maxAttempts}`],
    ["timeout", job.timeout],
    ["priority", String(job.priority)],
    ["created", clock(job.createdAt)],
    ["due", clock(job.runAt)],
    ["unique key", job.uniqueKey],
    ["held by", job.lockedBy && `${job.lockedBy} until ${clock(job.lockedUntil)}`],
    ["trace", job.traceId && el("code", { class: "mono trace-id", title: "Its trace id: search it in Jaeger, or GET /logs?traceId=…" }, job.traceId)],
    ["completed", job.completedAt && clock(job.completedAt)],
    ["cancelled", job.cancelledAt && clock(job.cancelledAt)],
  ];
  return el("dl", { class: "job-facts" },
    facts.filter(([, value]) => value).map(([term, value]) =>
      el("div", {}, el("dt", {}, term), el("dd", {}, value))),
    job.progress == null ? null
      : el("div", { class: "wide" }, el("dt", {}, "progress"), el("dd", {},
          el("progress", { max: "100", value: String(job.progress.percent) }),
          ` ${job.progress.percent}%`, job.progress.message ? ` – ${job.progress.message}` : "",
          el("span", { class: "muted" }, ` (${clock(job.progress.at)})`))),
    el("div", { class: "wide" }, el("dt", {}, "payload"), el("dd", {}, el("pre", { class: "mono" }, JSON.stringify(job.payload, null, 2)))),
    job.result == null ? null
      : el("div", { class: "wide" }, el("dt", {}, "result"), el("dd", {}, el("pre", { class: "mono" }, JSON.stringify(job.result, null, 2)))));
}

/**
 * A job's flow (#28): the jobs it depends on and those that depend on it,
 * each a link to its own detail, with its status. Nothing for a job outside
 * any flow (or if the flow cannot be read).
 */
async function jobFlow(job) {
  let tree;
  try {
    tree = await get(`/jobs/${encodeURIComponent(job.id)}/flow`);
  } catch {
    return null;
  }
  if (!tree.dependsOn.length && !tree.neededBy.length) return null;
  const links = (nodes) => el("ul", { class: "flow-links" }, nodes.map((node) =>
    el("li", { dataset: { job: node.id, status: node.status } },
      el("button", { type: "button", class: "link", "aria-label": `Show job ${node.id}`, onclick: () => showJob(node.id) },
        el("span", { class: "job-type" }, node.type), " ", el("span", { class: "muted mono" }, node.id.slice(-8))),
      ` ${node.status}`)));
  return el("dl", { class: "job-facts flow" },
    tree.dependsOn.length ? el("div", { class: "wide" }, el("dt", {}, "depends on"), el("dd", {}, links(tree.dependsOn))) : null,
    tree.neededBy.length ? el("div", { class: "wide" }, el("dt", {}, "needed by"), el("dd", {}, links(tree.neededBy))) : null,
    tree.truncated ? el("p", { class: "muted" }, "(more not shown)") : null);
}

async function pollJobs() {
  const status = byId("job-status").value;
  bulk.show(controls.bulk && status === "failed");
  try {
    const page = await get(`/jobs?status=${encodeURIComponent(status)}&limit=50`);
    const items = page.jobs.map(jobItem);
    fill(byId("job-list"), items.length ? items : el("li", { class: "muted empty" }, `no ${status} jobs`));
  } catch (error) {
    showError(byId("queue-error"), describe(error));
  }
}

/** Hide the detail box; focus goes back to the job's entry in the list. */
function closeJob(id) {
  byId("job-detail").hidden = true;
  byId("job-list").querySelector(`li[data-job="${CSS.escape(id)}"] .job-open`)?.focus();
}

/** A job's attempts, oldest first, in the detail box. */
async function showJob(id) {
  const box = byId("job-detail");
  try {
    const job = await get(`/jobs/${encodeURIComponent(id)}`);
    const attempts = (job.history || []).map((a) =>
      el("tr", {},
        el("td", { class: "num" }, a.attempt),
        el("td", {}, a.outcome),
        el("td", {}, clock(a.startedAt)),
        el("td", {}, a.finishedAt ? clock(a.finishedAt) : "–"),
        el("td", { class: "mono" }, a.executor),
        el("td", { class: "job-error" }, a.error || ""),
      ));
    const flow = await jobFlow(job);
    fill(box,
      el("div", { class: "panel-head" },
        el("h3", {}, `${job.type} `, el("span", { class: "muted mono" }, job.id)),
        el("button", { type: "button", class: "small secondary", onclick: () => closeJob(id) }, "Close")),
      jobFacts(job),
      flow,
      attempts.length
        ? el("div", { class: "table-wrap" }, el("table", { class: "history" },
            el("thead", {}, el("tr", {}, ["#", "Outcome", "Started", "Finished", "Executor", "Error"].map((h) => el("th", { scope: "col" }, h)))),
            el("tbody", {}, attempts)))
        : el("p", { class: "muted" }, "no attempts yet"));
    box.hidden = false;
    box.focus();
  } catch (error) {
    showError(byId("queue-error"), describe(error));
  }
}

/**
 * Which job controls of #18 this server has: read from its OpenAPI document
 * (every route is in it), so probing costs no failing request.
 */
async function detectControls() {
  try {
    const response = await fetch("/api-json", { cache: "no-store", signal: sessionSignal() });
    const paths = response.ok ? (await response.json()).paths || {} : {};
    controls.pauses = Boolean(paths["/jobs/pauses"]?.get);
    controls.cancel = Boolean(paths["/jobs/{id}/cancel"]?.post);
    controls.bulk = Boolean(paths["/jobs/bulk"]?.post);
    controls.limits = Boolean(paths["/jobs/limits"]?.get);
  } catch (error) {
    controls.pauses = controls.cancel = controls.bulk = controls.limits = false;
    if (error.name === "AbortError") return; // signed out meanwhile
  }
  const box = byId("queue-controls");
  box.hidden = !controls.pauses;
  if (controls.pauses) await drawPauses();
}

async function drawPauses() {
  const box = byId("queue-controls");
  try {
    const pauses = await get("/jobs/pauses");
    const limits = controls.limits ? (await get("/jobs/limits")).limits || [] : [];
    const toggle = async (method, type) => {
      try {
        await call(method, "/jobs/pauses", type ? { type } : {});
      } catch (error) {
        showError(byId("queue-error"), describe(error));
      }
      await drawPauses();
    };
    fill(box,
      el("span", { class: `pill ${pauses.queue ? "down" : "running"}` }, pauses.queue ? "queue paused" : "queue running"),
      el("button", { type: "button", class: "small secondary queue-toggle", onclick: () => toggle(pauses.queue ? "DELETE" : "POST") }, pauses.queue ? "Resume queue" : "Pause queue"),
      (pauses.types || []).map((type) =>
        el("button", { type: "button", class: "small secondary", "aria-label": `Resume jobs of type ${type}`, onclick: () => toggle("DELETE", type) }, `Resume ${type}`)),
      // Fleet-wide concurrency limits (set with PUT /jobs/limits/{type}).
      limits.map((limit) =>
        el("span", { class: "pill", title: `${limit.source === "stored" ? "set through the API" : "from queue.limits"}` },
          [limit.concurrency ? `≤ ${limit.concurrency} at once` : "", limit.rate ? `≤ ${limit.rate.limit} per ${limit.rate.period}` : ""]
            .filter(Boolean).join(", ").replace(/^/, `${limit.type}${limit.partitionBy ? ` (per ${limit.partitionBy})` : ""}: `))));
  } catch (error) {
    showError(byId("queue-error"), describe(error));
  }
}

/** Start polling. Returns stop. */
export function start() {
  // Redraw the list once the controls are known (it may have drawn before).
  detectControls().then(pollJobs);
  const stops = [every(STATS_MS, pollStats), every(JOBS_MS, pollJobs)];
  return () => stops.forEach((stop) => stop());
}

/** Wire the controls once. */
export function setup() {
  byId("job-status").addEventListener("change", pollJobs);
  byId("jobs-refresh").addEventListener("click", pollJobs);
  bulk.setup(() => Promise.all([pollJobs(), pollStats()]));
}

export function reset() {
  samples = [];
  controls = { pauses: false, cancel: false, bulk: false, limits: false };
  bulk.show(false);
  fill(byId("queue-counts"));
  fill(byId("job-list"));
  fill(byId("chart-depth"));
  fill(byId("chart-throughput"));
  byId("job-detail").hidden = true;
  byId("queue-controls").hidden = true;
}
