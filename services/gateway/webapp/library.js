// The video list: newest first, a page at a time, each card following its video live, with the
// actions its state allows (play, download, retry, cancel, delete).

import { byId, h, showError, toast } from "./dom.js";
import { sizeLabel, timeAgo } from "./format.js";
import { isCancelling, isInFlight } from "./videos.js";

const PAGE_SIZE = 20;
const STATUS_TEXT = {
  queued: "Queued",
  in_progress: "In progress",
  completed: "Completed",
  failed: "Failed",
};
const CLIP_STATUS_TEXT = { pending: "Waiting", in_progress: "Making", completed: "Done", failed: "Failed" };
const DELETE_CONFIRM_MS = 4000;
const RELATIVE_TIMES_MS = 30000; // "2 minutes ago" is redrawn this often

export class Library {
  #api;
  #store;
  #onPlay;
  #onChanged;
  #cards = new Map();
  #cardOf = new WeakMap(); // element -> card, for the visibility observer
  #thumbnails = new Map(); // id -> object URL
  #after = null;
  #hasMore = false;
  #loading = false;
  #observer;

  constructor(api, store, { onPlay, onChanged }) {
    this.#api = api;
    this.#store = store;
    this.#onPlay = onPlay;
    this.#onChanged = onChanged;
    this.#observer = new IntersectionObserver((entries) => this.#visible(entries), { rootMargin: "200px" });
    store.subscribe((change) => this.#apply(change));
    byId("load-more").addEventListener("click", () => this.loadMore());
    byId("refresh").addEventListener("click", () => this.reload());
    setInterval(() => {
      for (const card of this.#cards.values()) card.update(card.video);
    }, RELATIVE_TIMES_MS);
  }

  async reload() {
    this.#after = null;
    this.#store.clear();
    await this.loadMore();
  }

  async loadMore() {
    if (this.#loading) return;
    this.#loading = true;
    const list = byId("videos");
    const button = byId("load-more");
    list.setAttribute("aria-busy", "true");
    button.disabled = true;
    button.textContent = "Loading…";
    if (!this.#after) this.#showSkeletons(3);
    showError(byId("library-error"), null);
    try {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE), order: "desc" });
      if (this.#after) query.set("after", this.#after);
      const page = await this.#api.request("GET", `/v1/videos?${query}`);
      this.#removeSkeletons();
      this.#store.addPage(page.data);
      this.#after = page.last_id ?? this.#after;
      this.#hasMore = page.has_more;
    } catch (error) {
      this.#removeSkeletons();
      showError(byId("library-error"), error);
    } finally {
      this.#loading = false;
      list.setAttribute("aria-busy", "false");
      button.disabled = false;
      button.textContent = "Load more";
      this.#renderChrome();
    }
  }

  // ---- store changes -> cards ----------------------------------------------------------------

  #apply(change) {
    if (change.type === "reset") {
      for (const card of this.#cards.values()) this.#observer.unobserve(card.element);
      this.#cards.clear();
      byId("videos").replaceChildren();
    } else if (change.type === "add") {
      const card = new VideoCard(change.video, this.#actions());
      this.#cards.set(change.video.id, card);
      this.#cardOf.set(card.element, card);
      this.#place(card, change.video.id);
      this.#observer.observe(card.element);
    } else if (change.type === "update") {
      const card = this.#cards.get(change.video.id);
      card?.update(change.video);
      if (card && change.video.status === "completed" && change.previous.status !== "completed") {
        this.#loadThumbnail(card);
      }
    } else if (change.type === "remove") {
      const card = this.#cards.get(change.id);
      if (card) {
        this.#observer.unobserve(card.element);
        card.element.remove();
        this.#cards.delete(change.id);
      }
      const url = this.#thumbnails.get(change.id);
      if (url) URL.revokeObjectURL(url);
      this.#thumbnails.delete(change.id);
    }
    this.#onChanged(change);
    this.#renderChrome();
  }

  #place(card, id) {
    const list = byId("videos");
    const order = this.#store.all.map((video) => video.id);
    const next = order[order.indexOf(id) + 1];
    const before = next ? this.#cards.get(next)?.element : null;
    list.insertBefore(card.element, before ?? null);
  }

  #renderChrome() {
    const empty = this.#cards.size === 0 && !this.#loading && !byId("library-error").textContent;
    byId("empty").hidden = !empty;
    byId("load-more").hidden = !this.#hasMore || this.#cards.size === 0;
  }

  #showSkeletons(count) {
    const list = byId("videos");
    for (let i = 0; i < count; i++) {
      list.append(
        h(
          "li",
          { class: "video-card skeleton", "aria-hidden": "true" },
          h("div", { class: "video-media" }),
          h("div", { class: "video-body" }, h("span"), h("span"), h("span")),
        ),
      );
    }
  }

  #removeSkeletons() {
    for (const skeleton of byId("videos").querySelectorAll(".skeleton")) skeleton.remove();
  }

  // ---- thumbnails (fetched with the key, so as blobs), only for cards on screen ----------------

  #visible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const card = this.#cardOf.get(entry.target);
      if (card) this.#loadThumbnail(card);
    }
  }

  async #loadThumbnail(card) {
    const { id, status } = card.video;
    if (status !== "completed" || this.#thumbnails.has(id)) return;
    this.#thumbnails.set(id, null);
    try {
      const blob = await this.#api.blob(`/v1/videos/${encodeURIComponent(id)}/content?variant=thumbnail`);
      const url = URL.createObjectURL(blob);
      this.#thumbnails.set(id, url);
      card.showThumbnail(url);
    } catch {
      this.#thumbnails.delete(id); // the placeholder stays; a later scroll tries again
    }
  }

  // ---- actions -------------------------------------------------------------------------------

  #actions() {
    return {
      play: (video) => this.#onPlay(video),
      download: (video) => downloadOriginal(this.#api, video),
      retry: (video) => this.#act(video, "retry", "Trying again"),
      cancel: (video) => this.#act(video, "cancel", "Cancelling"),
      remove: async (video) => {
        await this.#api.request("DELETE", `/v1/videos/${encodeURIComponent(video.id)}`);
        this.#store.remove(video.id);
        toast("Video deleted");
      },
    };
  }

  async #act(video, action, done) {
    const updated = await this.#api.request("POST", `/v1/videos/${encodeURIComponent(video.id)}/${action}`);
    this.#store.upsert(updated);
    toast(done);
  }
}

// Fetched with the key, then saved under the video's id.
export async function downloadOriginal(api, video) {
  const blob = await api.blob(`/v1/videos/${encodeURIComponent(video.id)}/content`);
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: `${video.id}.mp4`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

class VideoCard {
  #actions;
  #actionsKey = "";
  #confirmTimer = null;

  constructor(video, actions) {
    this.#actions = actions;
    this.video = video;
    const promptId = `prompt-${video.id}`;
    this.media = h(
      "div",
      { class: "video-media", "aria-hidden": "true" },
      h("span", { class: "video-length" }, `${video.seconds} s`),
    );
    this.top = h("div", { class: "video-top" });
    this.prompt = h("p", { class: "video-prompt", id: promptId });
    this.progressFill = h("div", { class: "progress-fill" });
    this.progress = h(
      "div",
      {
        class: "progress",
        role: "progressbar",
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-labelledby": promptId,
      },
      this.progressFill,
    );
    this.progressText = h("span", { class: "progress-text" });
    this.progressRow = h("div", { class: "progress-row" }, this.progress, this.progressText);
    this.clips = h("ol", { class: "video-clips", "aria-label": "Clips" });
    this.problem = h("p", { class: "video-error" });
    this.actionError = h("p", { class: "video-action-error", role: "alert" });
    this.buttons = h("div", { class: "video-actions" });
    this.element = h(
      "li",
      { class: "video-card", dataset: { id: video.id } },
      this.media,
      h(
        "div",
        { class: "video-body" },
        this.top,
        this.prompt,
        this.progressRow,
        this.clips,
        this.problem,
        this.actionError,
        this.buttons,
      ),
    );
    this.update(video);
  }

  update(video) {
    this.video = video;
    const status = video.status;
    this.element.dataset.status = status;
    this.element.classList.toggle("is-cancelled", video.error?.code === "cancelled");
    this.element.classList.toggle("is-cancelling", isCancelling(video));

    const meta = [video.model, sizeLabel(video.size), `${video.seconds} s`, timeAgo(video.created_at)];
    if (video.reference_images)
      meta.push(`${video.reference_images} reference image${video.reference_images > 1 ? "s" : ""}`);
    this.top.replaceChildren(
      h("span", { class: `badge status-${status}` }, statusText(video)),
      h("span", { class: "video-meta" }, meta.join(" · ")),
      ...(video.retry_count ? [h("span", { class: "badge retries" }, `Retried ${video.retry_count}×`)] : []),
    );
    this.prompt.textContent = video.prompt;

    const inFlight = isInFlight(video);
    const progress = status === "completed" ? 100 : (video.progress ?? 0);
    this.progressRow.hidden = !inFlight;
    this.progress.setAttribute("aria-valuenow", String(progress));
    this.progress.setAttribute(
      "aria-valuetext",
      inFlight ? `${STATUS_TEXT[status]}, ${progress}%` : STATUS_TEXT[status],
    );
    this.progressFill.style.width = `${progress}%`;
    this.progress.classList.toggle("waiting", status === "queued");
    this.progressText.textContent =
      status === "queued" && video.queue_position ? `#${video.queue_position} in line` : `${progress}%`;

    this.#renderClips(video);
    const failure = (status === "failed" || isCancelling(video)) && video.error;
    this.problem.hidden = !failure;
    this.problem.textContent = failure ? video.error.message || video.error.code : "";

    const key = `${status}|${video.retry_count}|${isCancelling(video)}`;
    if (key !== this.#actionsKey) {
      this.#actionsKey = key;
      this.#renderActions(video);
    }
  }

  showThumbnail(url) {
    this.media.querySelector("img")?.remove();
    this.media.prepend(h("img", { src: url, alt: "" }));
    this.media.classList.add("has-image");
  }

  #renderClips(video) {
    const segments = video.segments ?? [];
    this.clips.hidden = segments.length === 0;
    this.clips.replaceChildren(
      ...segments.map((clip) => {
        const progress = clip.status === "completed" ? 100 : (clip.progress ?? 0);
        const fill = h("div", { class: "progress-fill" });
        fill.style.width = `${progress}%`;
        return h(
          "li",
          { class: `clip clip-${clip.status}`, dataset: { index: clip.index } },
          h("span", { class: "clip-label" }, `Clip ${clip.index + 1} · ${clip.seconds} s`),
          h("span", { class: "clip-prompt-text", title: clip.prompt }, clip.prompt),
          h(
            "div",
            {
              class: "progress thin",
              role: "progressbar",
              "aria-valuemin": 0,
              "aria-valuemax": 100,
              "aria-valuenow": progress,
              "aria-label": `Clip ${clip.index + 1}: ${CLIP_STATUS_TEXT[clip.status] ?? clip.status}`,
            },
            fill,
          ),
          h("span", { class: "clip-status" }, CLIP_STATUS_TEXT[clip.status] ?? clip.status),
        );
      }),
    );
  }

  #renderActions(video) {
    clearTimeout(this.#confirmTimer);
    const describedBy = this.prompt.id;
    const button = (label, className, run, busyLabel) =>
      h(
        "button",
        {
          type: "button",
          class: `button small ${className}`,
          "aria-describedby": describedBy,
          onclick: (event) => this.#run(event.currentTarget, run, busyLabel),
        },
        label,
      );
    const buttons = [];
    if (video.status === "completed") {
      buttons.push(button("Play", "primary", () => this.#actions.play(this.video)));
      buttons.push(button("Download", "ghost", () => this.#actions.download(this.video), "Downloading…"));
    }
    if (video.status === "failed") {
      buttons.push(button("Retry", "ghost", () => this.#actions.retry(this.video), "Retrying…"));
    }
    if (isCancelling(video)) {
      // nothing to do but wait for the release
    } else if (isInFlight(video)) {
      buttons.push(button("Cancel", "ghost", () => this.#actions.cancel(this.video), "Cancelling…"));
    } else {
      const remove = h(
        "button",
        { type: "button", class: "button small ghost danger", "aria-describedby": describedBy },
        "Delete",
      );
      remove.addEventListener("click", () => this.#confirmDelete(remove));
      buttons.push(remove);
    }
    this.buttons.replaceChildren(...buttons);
  }

  // Deleting cannot be undone, so it takes a second click.
  #confirmDelete(button) {
    if (button.dataset.confirming) {
      clearTimeout(this.#confirmTimer);
      this.#run(button, () => this.#actions.remove(this.video), "Deleting…");
      return;
    }
    button.dataset.confirming = "true";
    button.textContent = "Confirm delete";
    this.#confirmTimer = setTimeout(() => {
      delete button.dataset.confirming;
      button.textContent = "Delete";
    }, DELETE_CONFIRM_MS);
  }

  async #run(button, action, busyLabel) {
    const label = button.textContent;
    showError(this.actionError, null);
    button.disabled = true;
    if (busyLabel) button.textContent = busyLabel;
    try {
      await action();
    } catch (error) {
      showError(this.actionError, error);
    } finally {
      if (button.isConnected) {
        button.disabled = false;
        button.textContent = label === "Confirm delete" ? "Delete" : label;
        delete button.dataset.confirming;
      }
    }
  }
}

function statusText(video) {
  if (isCancelling(video)) return "Cancelling";
  if (video.status === "failed" && video.error?.code === "cancelled") return "Cancelled";
  return STATUS_TEXT[video.status] ?? video.status;
}
