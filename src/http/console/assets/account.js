// The account view: a person signs in with their own e-mail and password
// (never the ops token) and sees and uses what the API gives an account
// holder — the profile (with "resend verification" while unverified), the
// sessions (end one, end all others), password change, sign-out — and, signed
// out, "forgot password?". Every answer that is not 2xx is shown as its
// problem's detail, field errors beside their fields.

import * as api from "./account-api.js";
import { el, byId, fill, showError } from "./dom.js";

/** A date and time in the reader's locale, or "–". */
function when(rfc3339) {
  if (!rfc3339) return "–";
  const at = new Date(rfc3339);
  return Number.isNaN(at.getTime()) ? rfc3339 : at.toLocaleString("en-GB");
}

/** The text for a failed call ("" for one aborted by a sign-out). */
function describe(error) {
  if (error.name === "AbortError") return "";
  if (error instanceof api.AccountError) return `${error.message} (${error.status})`;
  return `The server did not answer: ${error.message}`;
}

function showSignIn(message = "") {
  byId("account-view").hidden = true;
  byId("account-sign-in").hidden = false;
  showError(byId("account-sign-in-error"), message);
  fill(byId("profile"));
  fill(byId("sessions-body"));
  for (const id of ["profile-status", "profile-error", "sessions-status", "sessions-error", "password-status", "password-error"]) {
    byId(id).textContent = "";
  }
}

async function open() {
  byId("account-sign-in").hidden = true;
  byId("account-view").hidden = false;
  await Promise.all([drawProfile(), drawSessions()]);
}

async function drawProfile() {
  try {
    const profile = await api.call("GET", "/users/profile");
    const verified = profile.emailVerified === true;
    fill(byId("profile"),
      el("dt", {}, "name"), el("dd", { id: "profile-name" }, profile.name),
      el("dt", {}, "e-mail"), el("dd", { id: "profile-email" }, profile.email),
      el("dt", {}, "e-mail verified"),
      el("dd", { id: "profile-verified", dataset: { verified: String(verified) }, class: verified ? "verified" : "unverified" },
        verified ? "yes" : "no — follow the link in the verification e-mail"),
      el("dt", {}, "member since"), el("dd", {}, when(profile.createdAt)));
    byId("resend-verification").hidden = verified;
    showError(byId("profile-error"), "");
  } catch (error) {
    showError(byId("profile-error"), describe(error));
  }
}

function sessionRow(session) {
  const action = session.current
    ? el("span", { class: "pill running" }, "this session")
    : el("button", { type: "button", class: "small danger-outline end-session", onclick: () => endSession(session.id) }, "End");
  return el("tr", { dataset: { session: session.id }, class: session.current ? "current" : "" },
    el("td", {}, when(session.createdAt)),
    el("td", {}, session.lastRefreshedAt ? when(session.lastRefreshedAt) : "never"),
    el("td", { class: "mono" }, session.clientAddress || "–"),
    el("td", { class: "agent small" }, session.userAgent || "–"),
    el("td", {}, action));
}

async function drawSessions() {
  try {
    const sessions = await api.call("GET", "/users/sessions");
    fill(byId("sessions-body"), sessions.map(sessionRow));
    byId("end-others").disabled = !sessions.some((s) => !s.current);
    showError(byId("sessions-error"), "");
  } catch (error) {
    showError(byId("sessions-error"), describe(error));
  }
}

/** Run an action, then show its outcome in `status` or its error in `error`. */
async function act(statusId, errorId, action) {
  byId(statusId).textContent = "";
  showError(byId(errorId), "");
  try {
    byId(statusId).textContent = await action();
  } catch (error) {
    showError(byId(errorId), describe(error));
  }
}

async function endSession(id) {
  await act("sessions-status", "sessions-error", async () => {
    await api.call("DELETE", `/users/sessions/${encodeURIComponent(id)}`);
    return "Session ended: its refresh token no longer works.";
  });
  await drawSessions();
}

async function endOthers() {
  await act("sessions-status", "sessions-error", async () => {
    const { ended } = await api.call("DELETE", "/users/sessions");
    return `Ended ${ended} other session${ended === 1 ? "" : "s"}.`;
  });
  await drawSessions();
}

async function resend() {
  // 409 (verified already) and 429 (this window's mails spent) show their detail.
  await act("profile-status", "profile-error", async () => {
    const answer = await api.call("POST", "/users/email/verify/resend");
    return answer.message;
  });
}

async function changePassword(event) {
  event.preventDefault();
  const current = byId("current-password");
  const next = byId("new-password");
  for (const id of ["current-password-error", "new-password-error", "password-error"]) showError(byId(id), "");
  byId("password-status").textContent = "";
  try {
    const body = { currentPassword: current.value, newPassword: next.value };
    // No retry on 401: here it means a wrong current password.
    const answer = await api.call("POST", "/users/password", body, { retry: false });
    current.value = "";
    next.value = "";
    byId("password-status").textContent = answer.message;
    await drawSessions();
  } catch (error) {
    if (error.name === "AbortError") return;
    const fields = error.fields || {};
    showError(byId("current-password-error"), fields.currentPassword);
    showError(byId("new-password-error"), fields.newPassword);
    showError(byId("password-error"), describe(error));
    (fields.newPassword ? next : current).focus();
  }
}

async function signIn(event) {
  event.preventDefault();
  const email = byId("account-email");
  const password = byId("account-password");
  const [address, secret] = [email.value.trim(), password.value];
  password.value = "";
  showError(byId("account-sign-in-error"), "");
  try {
    await api.login(address, secret);
  } catch (error) {
    const fields = Object.entries(error.fields || {}).map(([f, m]) => `${f}: ${m}`);
    showError(byId("account-sign-in-error"), [describe(error), ...fields].join(" · "));
    password.focus();
    return;
  }
  await open();
}

async function signOut() {
  await api.logout();
  showSignIn("Signed out.");
  byId("account-email").focus();
}

async function forgot(event) {
  event.preventDefault();
  const status = byId("forgot-status");
  status.textContent = "";
  try {
    const answer = await api.forgot(byId("forgot-email").value.trim());
    status.textContent = answer.message;
  } catch (error) {
    const fields = Object.values(error.fields || {});
    status.textContent = [describe(error), ...fields].join(" · ");
  }
}

/** Wire the view's forms and buttons (once, at load). */
export function setup() {
  api.whenSignedOut(showSignIn);
  byId("account-sign-in-form").addEventListener("submit", signIn);
  byId("forgot-form").addEventListener("submit", forgot);
  byId("password-form").addEventListener("submit", changePassword);
  byId("account-sign-out").addEventListener("click", signOut);
  byId("resend-verification").addEventListener("click", resend);
  byId("end-others").addEventListener("click", endOthers);
  byId("sessions-refresh").addEventListener("click", () => Promise.all([drawProfile(), drawSessions()]));
}

/** The view was chosen: focus its first control. */
export function shown() {
  if (!api.signedIn()) byId("account-email").focus();
}
