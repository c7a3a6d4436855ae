// A small line chart drawn as SVG (no library): one series, its own scale,
// the latest value and the maximum labelled. Only attributes are set, never
// style="…", which the page's CSP would refuse.

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 120;
const PAD = { left: 40, right: 8, top: 8, bottom: 18 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** "45 s" or "10 min". */
function span(ms) {
  return ms < 120000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60000)} min`;
}

/**
 * Draw `points` ([{ t: ms, v: number }], oldest first) into `box`, over the
 * time since `since` (the first sample) up to `maxWindowMs`, so a page
 * opened a minute ago fills its chart. `label` names the series for screen
 * readers.
 */
export function draw(box, points, since, maxWindowMs, label) {
  const now = Date.now();
  const windowMs = Math.min(maxWindowMs, Math.max(30000, now - since));
  const max = Math.max(1, ...points.map((p) => p.v));
  const x = (t) => PAD.left + ((t - (now - windowMs)) / windowMs) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const last = points.length ? points[points.length - 1].v : null;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": `${label}: ${last === null ? "no data yet" : `now ${Math.round(last)}`}, peak ${Math.round(max)} over the last ${span(windowMs)}`,
    preserveAspectRatio: "none",
    class: "chart-svg",
  });
  root.append(
    svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: "axis" }),
    svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(max), y2: y(max), class: "grid" }),
    svg("text", { x: PAD.left - 4, y: y(max) + 4, class: "tick", "text-anchor": "end" }, String(Math.round(max))),
    svg("text", { x: PAD.left - 4, y: y(0) + 4, class: "tick", "text-anchor": "end" }, "0"),
    svg("text", { x: PAD.left, y: H - 3, class: "tick" }, `−${span(windowMs)}`),
    svg("text", { x: W - PAD.right, y: H - 3, class: "tick", "text-anchor": "end" }, "now"),
  );
  if (points.length > 1) {
    const line = points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points: line, class: "series" }));
  }
  box.replaceChildren(root);
}
