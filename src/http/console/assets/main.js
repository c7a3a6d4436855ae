// The console's entry point: the two views (Ops, Account), the ops
// sign-in and sign-out, and starting/stopping the ops panels. Signing in
// checks the token against GET /ops/console/config (the first call every
// panel needs anyway) before keeping it. The Account view (account.js) is a
// user's own, with its own sign-in: it never sees the ops token, nor the ops
// views its tokens.

import { token, get, whenUnauthorized, abortAll, ApiError } from "./api.js";
import { byId } from "./dom.js";
import * as actors from "./actors.js";
import * as queue from "./queue.js";
import * as events from "./events.js";
import * as fleet from "./fleet.js";
import * as faults from "./faults.js";
import * as account from "./account.js";

const PANELS = [actors, queue, events, fleet];
let stops = [];

let view = "ops";

/** Show one view: "ops" or "account" (also the page's #fragment). */
function showView(name) {
  view = name === "account" ? "account" : "ops";
  byId("ops-view").hidden = view !== "ops";
  byId("account").hidden = view !== "account";
  byId("view-ops").setAttribute("aria-pressed", String(view === "ops"));
  byId("view-account").setAttribute("aria-pressed", String(view === "account"));
  // The topbar's sign-out and status line are the ops token's.
  byId("sign-out").hidden = view !== "ops" || !byId("connection").dataset.signedIn;
  byId("connection").hidden = view !== "ops";
  if (view === "account") account.shown();
}

function showSignIn(message = "") {
  byId("console").hidden = true;
  byId("sign-out").hidden = true;
  byId("sign-in").hidden = false;
  byId("sign-in-error").textContent = message;
  byId("connection").textContent = "";
  delete byId("connection").dataset.signedIn;
  if (view === "ops") byId("ops-token").focus();
}

function stopPanels() {
  stops.forEach((stop) => stop());
  stops = [];
}

/** Forget the token and everything shown with it. */
function signOut(message = "") {
  stopPanels();
  abortAll();
  token.clear();
  PANELS.forEach((panel) => panel.reset());
  showSignIn(message);
}

/** Check the stored token; start the panels if the server takes it. */
async function open() {
  let config;
  try {
    config = await get("/ops/console/config");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signOut("That ops token was refused (401). Check it and try again.");
    return showSignIn(`Could not reach the server: ${error.message}`);
  }
  byId("sign-in").hidden = true;
  byId("console").hidden = false;
  byId("sign-out").hidden = view !== "ops";
  const line = byId("connection");
  line.dataset.signedIn = `signed in · instance ${config.instance}${config.faultInjection ? " · fault injection on" : ""}`;
  line.textContent = line.dataset.signedIn;
  stopPanels();
  stops = PANELS.map((panel) => panel.start(config));
}

function setup() {
  faults.setup();
  queue.setup();
  events.setup();
  // A 401 from any call means the token is no longer good: sign out.
  whenUnauthorized(() => signOut("The server refused the ops token (401). Sign in again."));
  byId("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byId("ops-token");
    const value = input.value.trim();
    input.value = "";
    if (!value) return showSignIn("Enter the ops token.");
    token.set(value);
    open();
  });
  byId("sign-out").addEventListener("click", () => signOut("Signed out."));
  account.setup();
  byId("view-ops").addEventListener("click", () => showView("ops"));
  byId("view-account").addEventListener("click", () => showView("account"));
  showView(location.hash === "#account" ? "account" : "ops");
  if (token.get()) open();
  else showSignIn();
}

setup();
