// The Vidflow web app: sign in with an API key, then make, follow, play and manage videos.
// The key lives in localStorage and leaves the browser only in the Authorization header (and the
// live socket's first message); it is never put in a URL or logged.

import { Api } from "./api.js";
import { Composer } from "./composer.js";
import { byId, showError, toast } from "./dom.js";
import { count } from "./format.js";
import { Library } from "./library.js";
import { LiveUpdates } from "./live.js";
import { Player } from "./player.js";
import { VideoStore, isInFlight } from "./videos.js";

const KEY_STORAGE = "vidflow.apiKey";
const NOTICE_STORAGE = "vidflow.signInNotice"; // why the last session ended, shown after the reload
const BALANCE_DELAY_MS = 300;
const HELD_CHECK_FIRST_MS = 1500;
const HELD_CHECK_MAX_MS = 30000;
const LIVE_TEXT = { connecting: "Connecting", live: "Live", polling: "Polling" };

function start() {
  byId("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(byId("api-key").value.trim());
  });
  byId("toggle-key").addEventListener("click", (event) => {
    const input = byId("api-key");
    const showing = input.type === "text";
    input.type = showing ? "password" : "text";
    event.currentTarget.textContent = showing ? "Show" : "Hide";
    event.currentTarget.setAttribute("aria-pressed", String(!showing));
  });
  byId("sign-out").addEventListener("click", () => signOut());

  const notice = sessionStorage.getItem(NOTICE_STORAGE);
  sessionStorage.removeItem(NOTICE_STORAGE);
  const stored = localStorage.getItem(KEY_STORAGE);
  if (stored) {
    signIn(stored, { remembered: true });
  } else {
    showSignIn(notice);
  }
}

function showSignIn(message) {
  byId("workspace").hidden = true;
  byId("account").hidden = true;
  byId("signin").hidden = false;
  byId("signin-error").textContent = message || "";
  byId("api-key").focus();
}

async function signIn(key, { remembered = false } = {}) {
  const error = byId("signin-error");
  if (!key) {
    showSignIn("Paste your API key first.");
    return;
  }
  const button = byId("signin-submit");
  button.disabled = true;
  button.textContent = "Signing in…";
  showError(error, null);
  const api = new Api(key);
  try {
    const balance = await api.request("GET", "/v1/billing/balance");
    localStorage.setItem(KEY_STORAGE, key);
    byId("api-key").value = "";
    openWorkspace(api, balance);
  } catch (failure) {
    if (remembered && failure.status === 401) localStorage.removeItem(KEY_STORAGE);
    showSignIn(failure.message);
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

// Signing out reloads the page: nothing of the session (videos, blobs, the socket) outlives it.
function signOut(notice) {
  localStorage.removeItem(KEY_STORAGE);
  if (notice) sessionStorage.setItem(NOTICE_STORAGE, notice);
  location.reload();
}

function openWorkspace(api, balance) {
  byId("signin").hidden = true;
  byId("workspace").hidden = false;
  byId("account").hidden = false;
  showBalance(balance);

  const refused = () => signOut("Your API key was refused. Sign in again with a valid key.");
  api.onUnauthenticated = refused;
  // Refreshed soon after anything that moves credits. Holds are settled by the jobs service after
  // the answer (a cancel's release, say), so while credits are held it looks again, less and less often.
  let balanceTimer = null;
  let heldCheckMs = HELD_CHECK_FIRST_MS;
  const refreshBalance = (delayMs = BALANCE_DELAY_MS) => {
    clearTimeout(balanceTimer);
    balanceTimer = setTimeout(async () => {
      try {
        const latest = await api.request("GET", "/v1/billing/balance");
        showBalance(latest);
        if (latest.held > 0) {
          refreshBalance(heldCheckMs);
          heldCheckMs = Math.min(heldCheckMs * 2, HELD_CHECK_MAX_MS);
        } else {
          heldCheckMs = HELD_CHECK_FIRST_MS;
        }
      } catch {
        // the next change tries again; a refused key signs out through api.onUnauthenticated
      }
    }, delayMs);
  };

  const store = new VideoStore();
  const live = new LiveUpdates(api, {
    onVideo: (video) => store.upsert(video),
    onState: (state) => {
      byId("live-state").dataset.state = state;
      byId("live-state-text").textContent = LIVE_TEXT[state];
    },
    onUnauthenticated: refused,
  });
  const player = new Player(api);
  const library = new Library(api, store, {
    onPlay: (video) => player.open(video),
    onChanged: (change) => {
      if (change.type === "reset") return;
      if (change.type === "remove") {
        live.unwatch(change.id);
        refreshBalance();
        return;
      }
      const { video, previous } = change;
      if (isInFlight(video)) {
        live.watch([video.id]);
      } else {
        live.unwatch(video.id);
      }
      // Holds, charges and releases happen as videos start, retry and end.
      if (!previous || previous.status !== video.status || !isInFlight(video)) refreshBalance();
    },
  });
  new Composer(api, {
    onCreated: (video) => {
      store.upsert(video);
      if (isInFlight(video)) toast("Video queued"); // a refusal shows on its card
    },
  });
  live.start();
  library.loadMore();
}

function showBalance(balance) {
  byId("balance-available").textContent = `${count(balance.available)} credits`;
  byId("balance-held").textContent = balance.held ? `${count(balance.held)} held` : "";
}

start();
