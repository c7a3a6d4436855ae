// Small DOM and formatting helpers shared by the panels. Everything the
// console shows is built with createElement/textContent, never innerHTML:
// actor names, failure reasons and event payloads are server data.

/** An element with attributes/properties and children (strings become text). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof node[key] !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const byId = (id) => document.getElementById(id);

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/** Show a message in an error slot (empty hides it). */
export function showError(node, message) {
  node.textContent = message || "";
}

/** "1.2 s", "3 min", "2 h" from seconds. */
export function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 90) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** A number with at most `digits` decimals, "–" when absent. */
export function num(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
}

/** The local time of an RFC 3339 timestamp, e.g. "14:03:07". */
export function clock(rfc3339) {
  if (!rfc3339) return "";
  const at = new Date(rfc3339);
  return Number.isNaN(at.getTime()) ? rfc3339 : at.toLocaleTimeString("en-GB");
}

/** "updated 14:03:07" for a panel's freshness line. */
export function stamp(node) {
  node.textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
}

/**
 * Run `task` now and then every `ms` after each run finishes (a chained
 * timeout, not setInterval: a slow server never gets overlapping polls).
 * Returns a stop function.
 */
export function every(ms, task) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    try {
      // A tab in the background skips its polls (a forgotten tab costs nothing).
      if (!document.hidden) await task();
    } finally {
      if (!stopped) timer = setTimeout(run, ms);
    }
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
