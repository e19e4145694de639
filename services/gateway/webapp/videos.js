// The videos the app knows, newest first, updated from three sources that can arrive in any order:
// list pages, answers to actions (create, cancel, retry), and live events. A state never goes back.

const STATUS_RANK = { queued: 0, in_progress: 1, completed: 2, failed: 2 };

export function isInFlight(video) {
  return video.status === "queued" || video.status === "in_progress";
}

// A video being cancelled is still in progress, with its error already set.
export function isCancelling(video) {
  return isInFlight(video) && video.error?.code === "cancelled";
}

// Later retries win; within one try, a later status; within one status, an error set (a cancel on
// its way), then more progress.
function isNotOlder(next, known) {
  const order = [
    [next.retry_count ?? 0, known.retry_count ?? 0],
    [STATUS_RANK[next.status] ?? 0, STATUS_RANK[known.status] ?? 0],
    [next.error ? 1 : 0, known.error ? 1 : 0],
    [next.progress ?? 0, known.progress ?? 0],
  ];
  for (const [a, b] of order) {
    if (a !== b) return a > b;
  }
  return true;
}

export class VideoStore {
  #videos = new Map();
  #order = []; // ids, newest first
  #deleted = new Set();
  #listeners = new Set();

  subscribe(listener) {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get(id) {
    return this.#videos.get(id);
  }

  get all() {
    return this.#order.map((id) => this.#videos.get(id));
  }

  get inFlight() {
    return this.all.filter(isInFlight);
  }

  clear() {
    this.#videos.clear();
    this.#order = [];
    this.#deleted.clear();
    this.#emit({ type: "reset" });
  }

  // A page of GET /v1/videos (newest first), appended after what is known.
  addPage(videos) {
    for (const video of videos) this.upsert(video, { append: true });
  }

  // One video's latest state. New ones go first (a video just made), or last for a list page.
  upsert(video, { append = false } = {}) {
    if (this.#deleted.has(video.id)) return;
    const known = this.#videos.get(video.id);
    if (known && !isNotOlder(video, known)) return;
    this.#videos.set(video.id, video);
    if (!known) {
      if (append) this.#order.push(video.id);
      else this.#insertByTime(video);
    }
    this.#emit({ type: known ? "update" : "add", video, previous: known });
  }

  remove(id) {
    this.#deleted.add(id);
    if (!this.#videos.delete(id)) return;
    this.#order = this.#order.filter((other) => other !== id);
    this.#emit({ type: "remove", id });
  }

  #insertByTime(video) {
    const at = this.#order.findIndex((id) => this.#videos.get(id).created_at <= video.created_at);
    if (at === -1) this.#order.push(video.id);
    else this.#order.splice(at, 0, video.id);
  }

  #emit(change) {
    for (const listener of this.#listeners) listener(change, this);
  }
}
