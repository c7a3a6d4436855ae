// The console's entry point: sign-in, sign-out, and starting/stopping the
// panels. Signing in checks the token against GET /ops/console/config (the
// first call every panel needs anyway) before keeping it.

import { token, get, whenUnauthorized, abortAll, ApiError } from "./api.js";
import { byId } from "./dom.js";
import * as actors from "./actors.js";
import * as queue from "./queue.js";
import * as events from "./events.js";
import * as fleet from "./fleet.js";
import * as faults from "./faults.js";

const PANELS = [actors, queue, events, fleet];
let stops = [];

function showSignIn(message = "") {
  byId("console").hidden = true;
  byId("sign-out").hidden = true;
  byId("sign-in").hidden = false;
  byId("sign-in-error").textContent = message;
  byId("connection").textContent = "";
  delete byId("connection").dataset.signedIn;
  byId("ops-token").focus();
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
  byId("sign-out").hidden = false;
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
  if (token.get()) open();
  else showSignIn();
}

setup();
