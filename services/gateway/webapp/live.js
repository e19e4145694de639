// Live video status. One WebSocket (/v1/ws) carries every video's events: EventSource cannot send
// the Authorization header and the gateway rightly refuses keys in URLs, while the socket takes the
// key in its first message. One socket also spares the browser's six connections per host, which
// one event stream per video would use up. When the socket is down, the videos still in flight
// are polled, as often as the API's `openai-poll-after-ms` asks.

import { apiUrl } from "./api.js";

const EVENT = "video.status_changed";
const CLOSE_UNAUTHENTICATED = 4401;
const DEFAULT_POLL_MS = 2000;
const MAX_BACKOFF_MS = 30000;
const MAX_VIDEOS_PER_SUBSCRIBE = 100;

export class LiveUpdates {
  #api;
  #onVideo;
  #onState;
  #onUnauthenticated;
  #socket = null;
  #open = false;
  #stopped = true; // until start(); signing out reloads the page
  #backoffMs = 1000;
  #watched = new Map(); // id -> last event sequence seen (null: none yet)
  #pollTimers = new Map();

  constructor(api, { onVideo, onState, onUnauthenticated }) {
    this.#api = api;
    this.#onVideo = onVideo;
    this.#onState = onState;
    this.#onUnauthenticated = onUnauthenticated;
  }

  start() {
    this.#stopped = false;
    this.#connect();
  }

  // Follow these videos until they finish (their current state comes first).
  watch(ids) {
    const fresh = ids.filter((id) => !this.#watched.has(id));
    for (const id of fresh) this.#watched.set(id, null);
    if (!fresh.length) return;
    if (this.#open) this.#send({ type: "subscribe", videos: fresh });
    else for (const id of fresh) this.#schedulePoll(id, 0);
  }

  unwatch(id) {
    this.#watched.delete(id);
    clearTimeout(this.#pollTimers.get(id));
    this.#pollTimers.delete(id);
  }

  #connect() {
    if (this.#stopped) return;
    this.#onState("connecting");
    const url = apiUrl("/v1/ws");
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(url);
    this.#socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "authenticate", token: this.#api.key }));
      // "all": videos made from now on, in this tab or elsewhere; then the ones already in flight.
      socket.send(JSON.stringify({ type: "subscribe", videos: "all" }));
    });
    socket.addEventListener("message", (message) => this.#receive(message.data));
    socket.addEventListener("close", (event) => this.#closed(socket, event.code));
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "subscribed" && message.videos === "all") {
      this.#open = true;
      this.#backoffMs = 1000;
      this.#stopPolling();
      this.#resubscribe();
      this.#onState("live");
    } else if (message.type === EVENT) {
      if (this.#watched.has(message.id)) this.#watched.set(message.id, message.sequence);
      this.#onVideo(message.data);
    } else if (message.type === "error" && message.id && message.error?.code === "video_not_found") {
      this.unwatch(message.id);
    }
  }

  #closed(socket, code) {
    if (socket !== this.#socket) return;
    this.#open = false;
    this.#socket = null;
    if (this.#stopped) return;
    if (code === CLOSE_UNAUTHENTICATED) {
      this.#onUnauthenticated();
      return;
    }
    this.#onState("polling");
    for (const id of this.#watched.keys()) this.#schedulePoll(id, 0);
    setTimeout(() => this.#connect(), this.#backoffMs * (0.5 + Math.random()));
    this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
  }

  // The videos in flight, each resumed after the last event seen (the server sends what was missed).
  #resubscribe() {
    const videos = [...this.#watched].map(([id, last]) => (last === null ? id : { id, last_event_id: last }));
    for (let start = 0; start < videos.length; start += MAX_VIDEOS_PER_SUBSCRIBE) {
      this.#send({ type: "subscribe", videos: videos.slice(start, start + MAX_VIDEOS_PER_SUBSCRIBE) });
    }
  }

  #schedulePoll(id, delayMs) {
    if (this.#pollTimers.has(id) || this.#open || this.#stopped || !this.#watched.has(id)) return;
    this.#pollTimers.set(
      id,
      setTimeout(() => this.#poll(id), delayMs),
    );
  }

  async #poll(id) {
    this.#pollTimers.delete(id);
    if (this.#open || this.#stopped || !this.#watched.has(id)) return;
    let nextMs = DEFAULT_POLL_MS;
    try {
      const { body, headers } = await this.#api.request("GET", `/v1/videos/${encodeURIComponent(id)}`, {
        withHeaders: true,
      });
      this.#onVideo(body);
      nextMs = Number(headers.get("openai-poll-after-ms")) || DEFAULT_POLL_MS;
    } catch (error) {
      if (error.status === 401) return; // the Api signs out
      if (error.status === 404) return this.unwatch(id);
    }
    this.#schedulePoll(id, nextMs);
  }

  #stopPolling() {
    for (const timer of this.#pollTimers.values()) clearTimeout(timer);
    this.#pollTimers.clear();
  }

  #send(message) {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }
}
