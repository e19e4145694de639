// The player: a finished video's renditions (presigned URLs the <video> plays directly) and the
// original (served only with the key, so fetched as a blob), switched without losing the place.

import { byId, h, showError } from "./dom.js";
import { fileSize } from "./format.js";
import { downloadOriginal } from "./library.js";

const ORIGINAL = "original";

export class Player {
  #api;
  #video = null;
  #sources = []; // {name, label, detail, url?}
  #blobUrls = [];
  #session = 0; // an answer for a video since closed is dropped
  #resume = null; // {at, playing}: where to pick up once the next source has loaded

  constructor(api) {
    this.#api = api;
    this.dialog = byId("player");
    this.element = byId("player-video");
    byId("player-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => this.#closed());
    this.dialog.addEventListener("click", (event) => {
      if (event.target === this.dialog) this.dialog.close(); // a click on the backdrop
    });
    byId("player-download").addEventListener("click", (event) => this.#download(event.currentTarget));
    this.element.addEventListener("loadedmetadata", () => this.#loaded());
    this.element.addEventListener("error", () => {
      if (this.element.getAttribute("src")) {
        showError(byId("player-error"), new Error("This rendition could not be played; try another."));
      }
    });
  }

  async open(video) {
    const session = ++this.#session;
    this.#video = video;
    byId("player-title").textContent = video.prompt || video.id;
    showError(byId("player-error"), null);
    byId("renditions").replaceChildren();
    byId("player-info").textContent = "Loading…";
    this.dialog.dataset.state = "loading";
    this.dialog.showModal();
    const base = `/v1/videos/${encodeURIComponent(video.id)}`;
    const [renditions, poster] = await Promise.allSettled([
      this.#api.request("GET", `${base}/renditions`),
      this.#api.blob(`${base}/content?variant=poster`),
    ]);
    if (session !== this.#session) return;
    if (poster.status === "fulfilled") this.element.poster = this.#keep(URL.createObjectURL(poster.value));
    if (renditions.status === "rejected") showError(byId("player-error"), renditions.reason);
    const ladder = renditions.status === "fulfilled" ? renditions.value.data : [];
    this.#sources = [
      ...ladder.map((rendition) => ({
        name: rendition.name,
        label: rendition.name,
        detail: `${rendition.width} × ${rendition.height} · ${fileSize(rendition.size_bytes)}`,
        url: rendition.url,
      })),
      { name: ORIGINAL, label: "Original", detail: `${video.size.replace("x", " × ")} · as generated` },
    ];
    byId("renditions").replaceChildren(
      ...this.#sources.map((source) =>
        h(
          "button",
          {
            type: "button",
            class: "segment",
            "aria-pressed": "false",
            dataset: { rendition: source.name },
            onclick: () => this.#play(source, session),
          },
          source.label,
        ),
      ),
    );
    await this.#play(this.#sources[0], session);
  }

  async #play(source, session) {
    if (session !== this.#session) return;
    for (const button of byId("renditions").children) {
      button.setAttribute("aria-pressed", String(button.dataset.rendition === source.name));
    }
    byId("player-info").textContent = source.detail;
    showError(byId("player-error"), null);
    this.dialog.dataset.state = "loading";
    try {
      if (!source.url) {
        const blob = await this.#api.blob(`/v1/videos/${encodeURIComponent(this.#video.id)}/content`);
        source.url = this.#keep(URL.createObjectURL(blob));
      }
    } catch (error) {
      showError(byId("player-error"), error);
      return;
    }
    if (session !== this.#session) return;
    const element = this.element;
    this.#resume ??= { at: element.currentTime, playing: !element.paused && !element.ended };
    element.dataset.rendition = source.name;
    element.src = source.url;
  }

  #loaded() {
    const element = this.element;
    const { at, playing } = this.#resume ?? { at: 0, playing: false };
    this.#resume = null;
    if (at > 0 && at < element.duration) element.currentTime = at;
    if (playing) element.play().catch(() => {}); // autoplay rules may refuse; the controls remain
    this.dialog.dataset.state = "ready";
  }

  async #download(button) {
    if (!this.#video) return;
    button.disabled = true;
    button.textContent = "Downloading…";
    try {
      await downloadOriginal(this.#api, this.#video);
    } catch (error) {
      showError(byId("player-error"), error);
    } finally {
      button.disabled = false;
      button.textContent = "Download original";
    }
  }

  #keep(url) {
    this.#blobUrls.push(url);
    return url;
  }

  #closed() {
    this.#session++;
    this.#resume = null;
    this.element.pause();
    this.element.removeAttribute("src");
    this.element.removeAttribute("poster");
    delete this.element.dataset.rendition;
    this.element.load();
    for (const url of this.#blobUrls) URL.revokeObjectURL(url);
    this.#blobUrls = [];
    this.#video = null;
  }
}
