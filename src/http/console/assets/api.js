// The ops API as the console calls it: the token lives in sessionStorage
// (this tab only, gone when it closes) and travels only in the
// Authorization header. A 401 anywhere signs the console out.

const TOKEN_KEY = "troupe.opsToken";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An API answer that was not 2xx, with the problem's detail if it had one. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

let onUnauthorized = () => {};

// Every call of a signed-in session carries this signal: signing out aborts
// the calls still in flight, so none of them draws data after the sign-out.
let session = new AbortController();

/** Abort every call in flight and start afresh (sign-out). */
export function abortAll() {
  session.abort();
  session = new AbortController();
}

/** The current session's signal (the event stream combines it with its own). */
export const sessionSignal = () => session.signal;

/** Who to tell when the server refuses the token (main.js signs out). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** The headers of an authenticated call. */
export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token.get() ?? ""}`, ...extra };
}

/** Throw an ApiError for a non-2xx response (problem+json detail if any). */
export async function check(response) {
  if (response.ok) return response;
  let detail = "";
  try {
    const problem = await response.json();
    detail = problem.detail || problem.title || "";
  } catch {
    // Not JSON: the status says enough.
  }
  if (response.status === 401) onUnauthorized(detail);
  throw new ApiError(response.status, detail);
}

/** Call the API: JSON in, JSON out. */
export async function call(method, path, body) {
  const init = { method, headers: authHeaders(), signal: session.signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await check(await fetch(path, init));
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : null;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);

/** A short text for an error, for the panels' error lines. */
export function describe(error) {
  if (error.name === "AbortError") return ""; // signed out: nothing to say
  if (error instanceof ApiError) return `${error.message} (${error.status})`;
  return `The server did not answer: ${error.message}`;
}
