// The user API as the account view calls it. The token pair lives in this
// module's memory only (never localStorage, sessionStorage, a cookie or a
// URL): a reload or sign-out forgets it. It is never exported, and the ops
// views' api.js never sees it, nor does this module ever send the ops token.

/** An answer that was not 2xx: the problem's detail and its field errors. */
export class AccountError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.fields = Object.fromEntries((problem.errors || []).map((e) => [e.field, e.message]));
  }
}

let pair = null; // { access, refresh } while signed in
let onSignedOut = () => {};
let calls = new AbortController();

/** Who to tell when the session is gone (the refresh token refused). */
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

export const signedIn = () => pair !== null;

/** Forget the pair and abort every call in flight. */
export function forget() {
  pair = null;
  calls.abort();
  calls = new AbortController();
}

async function send(method, path, { body, bearer } = {}) {
  const headers = {};
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, signal: calls.signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get("content-type") || "";
  const json = type.includes("json") ? await response.json().catch(() => ({})) : {};
  if (!response.ok) throw new AccountError(response.status, json);
  return json;
}

function keep(answer) {
  pair = { access: answer.access_token, refresh: answer.refresh_token };
}

/** Sign in with e-mail and password (POST /users/login). */
export async function login(email, password) {
  forget();
  keep(await send("POST", "/users/login", { body: { email, password } }));
}

// One refresh at a time: two calls meeting a 401 together share it.
let refreshing = null;

async function refresh() {
  const spent = pair?.refresh;
  if (!spent) return false;
  refreshing ??= send("POST", "/users/refresh", { bearer: spent })
    .then((answer) => { keep(answer); return true; })
    .catch((error) => {
      if (error.name === "AbortError") throw error;
      return false;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

/**
 * An authenticated call. A 401 (an access token expired or revoked) gets
 * one refresh with the refresh token and one retry; if the refresh is
 * refused the session is over. `retry: false` for a call whose 401 is an
 * answer about what it sent (a wrong current password): retrying would
 * count the same wrong password twice.
 */
export async function call(method, path, body, { retry = true } = {}) {
  if (!pair) throw new AccountError(401, { detail: "not signed in" });
  try {
    return await send(method, path, { body, bearer: pair.access });
  } catch (error) {
    if (!(error instanceof AccountError) || error.status !== 401 || !retry) throw error;
    if (!(await refresh())) {
      forget();
      onSignedOut("Your session has ended. Sign in again.");
      throw error;
    }
    return send(method, path, { body, bearer: pair.access });
  }
}

/** Log out (POST /users/logout), then forget the pair whatever the answer. */
export async function logout() {
  try {
    if (pair) await call("POST", "/users/logout");
  } catch {
    // Gone already, or unreachable: the pair is forgotten all the same.
  } finally {
    forget();
  }
}

/** Ask for a reset e-mail (POST /users/password/forgot; anonymous). */
export const forgot = (email) => send("POST", "/users/password/forgot", { body: { email } });
