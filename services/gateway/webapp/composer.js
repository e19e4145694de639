// The new-video form: model, length, size, reference images, a long video's clips, and a live quote
// (POST /v1/billing/quote with the same fields create takes).

import { byId, h, showError } from "./dom.js";
import { credits, fileSize, orientation, sizeLabel } from "./format.js";

const SIZES = {
  "sora-2": ["1280x720", "720x1280"],
  "sora-2-pro": ["1280x720", "720x1280", "1792x1024", "1024x1792", "1920x1080", "1080x1920"],
};
const CLIP_SECONDS = [4, 8, 12, 16, 20];
const LONGEST_CLIP = 20;
const LONGEST_VIDEO = 120;
const MAX_CLIPS = 12;
const MAX_REFERENCES = 4;
const MAX_REFERENCE_BYTES = 10 * 1024 * 1024;
const REFERENCE_TYPES = ["image/png", "image/jpeg", "image/webp"];
const QUOTE_DELAY_MS = 350;

export class Composer {
  #api;
  #onCreated;
  #references = []; // {file, url}
  #clips = []; // {key, prompt, seconds}
  #nextClipKey = 1;
  #quoteTimer = null;
  #quoteAbort = null;
  #draftKey = newIdempotencyKey();
  #chosenSeconds = "4"; // the length picked, kept while the clips' total stands in for it
  #busy = false;

  constructor(api, { onCreated }) {
    this.#api = api;
    this.#onCreated = onCreated;
    this.form = byId("create-form");
    this.#fillSeconds();
    this.#fillSizes();
    this.form.addEventListener("input", () => this.#changed());
    this.form.addEventListener("change", (event) => {
      if (event.target.name === "model") this.#fillSizes();
      this.#changed();
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submit();
    });
    byId("reference-input").addEventListener("change", (event) => {
      this.#addReferences([...event.target.files]);
      event.target.value = "";
    });
    this.#wireDropzone(byId("dropzone"));
    byId("custom-clips").addEventListener("change", (event) => this.#setCustomClips(event.target.checked));
    byId("add-clip").addEventListener("click", () => this.#addClip());
    this.#renderClipsHint();
    this.#quoteSoon(0);
  }

  // ---- fields --------------------------------------------------------------------------------

  get #model() {
    return this.form.elements.model.value;
  }

  get #customClips() {
    return byId("custom-clips").checked;
  }

  #fillSeconds() {
    const select = byId("seconds");
    const short = h("optgroup", { label: "One clip" });
    for (const seconds of CLIP_SECONDS) short.append(h("option", { value: seconds }, `${seconds} seconds`));
    const long = h("optgroup", { label: "Long video, made of clips" });
    for (let seconds = LONGEST_CLIP + 4; seconds <= LONGEST_VIDEO; seconds += 4) {
      long.append(h("option", { value: seconds }, `${seconds} seconds`));
    }
    select.replaceChildren(short, long);
    select.value = this.#chosenSeconds;
  }

  #fillSizes() {
    const select = byId("size");
    const previous = select.value;
    const groups = Object.entries(Object.groupBy(SIZES[this.#model], orientation)).map(([name, sizes]) =>
      h(
        "optgroup",
        { label: name },
        sizes.map((size) => h("option", { value: size }, sizeLabel(size))),
      ),
    );
    select.replaceChildren(...groups);
    if (SIZES[this.#model].includes(previous)) select.value = previous;
  }

  // The create body's fields; `segments` only when the user writes the clips.
  #fields() {
    const fields = {
      model: this.#model,
      prompt: this.form.elements.prompt.value,
      size: byId("size").value,
    };
    if (this.#customClips) {
      fields.segments = this.#clips.map((clip) => ({ prompt: clip.prompt, seconds: clip.seconds }));
    } else {
      fields.seconds = byId("seconds").value;
    }
    return fields;
  }

  #changed() {
    this.#draftKey = newIdempotencyKey();
    showError(byId("create-error"), null);
    if (this.#customClips) this.#showClipTotal();
    else this.#chosenSeconds = byId("seconds").value;
    this.#renderClipsHint();
    this.#quoteSoon(QUOTE_DELAY_MS);
  }

  // ---- reference images ----------------------------------------------------------------------

  #addReferences(files) {
    const error = byId("reference-error");
    showError(error, null);
    for (const file of files) {
      if (this.#references.length >= MAX_REFERENCES) {
        showError(error, new Error(`At most ${MAX_REFERENCES} reference images; remove one to add another.`));
        break;
      }
      if (!REFERENCE_TYPES.includes(file.type)) {
        showError(error, new Error(`${file.name} is not a PNG, JPEG or WebP image.`));
        continue;
      }
      if (file.size > MAX_REFERENCE_BYTES) {
        showError(error, new Error(`${file.name} is larger than 10 MB.`));
        continue;
      }
      this.#references.push({ file, url: URL.createObjectURL(file) });
    }
    this.#renderReferences();
  }

  #removeReference(index) {
    const [removed] = this.#references.splice(index, 1);
    URL.revokeObjectURL(removed.url);
    showError(byId("reference-error"), null);
    this.#renderReferences();
    byId("reference-pick").focus();
  }

  #renderReferences() {
    byId("reference-list").replaceChildren(
      ...this.#references.map(({ file, url }, index) =>
        h(
          "li",
          { class: "thumb" },
          h("img", { src: url, alt: `Reference image ${index + 1}: ${file.name}` }),
          h("span", { class: "thumb-size" }, fileSize(file.size)),
          h(
            "button",
            {
              type: "button",
              class: "thumb-remove",
              "aria-label": `Remove ${file.name}`,
              onclick: () => this.#removeReference(index),
            },
            "✕",
          ),
        ),
      ),
    );
    byId("fit-field").hidden = this.#references.length === 0;
    byId("dropzone").classList.toggle("full", this.#references.length >= MAX_REFERENCES);
    this.#draftKey = newIdempotencyKey();
  }

  #wireDropzone(zone) {
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      this.#addReferences([...event.dataTransfer.files]);
    });
  }

  // ---- clips of a long video -----------------------------------------------------------------

  #setCustomClips(on) {
    if (on && this.#clips.length === 0) {
      const prompt = this.form.elements.prompt.value.trim();
      this.#clips = [this.#newClip(prompt, LONGEST_CLIP), this.#newClip("", LONGEST_CLIP)];
    }
    byId("seconds").disabled = on;
    byId("add-clip").hidden = !on;
    this.#renderClips();
    if (!on) byId("seconds").value = this.#chosenSeconds;
    this.#changed();
  }

  #newClip(prompt, seconds) {
    return { key: this.#nextClipKey++, prompt, seconds };
  }

  #addClip() {
    if (this.#clips.length >= MAX_CLIPS) return;
    this.#clips.push(this.#newClip("", 8));
    this.#renderClips();
    this.#changed();
    byId("clip-editor").lastElementChild?.querySelector("textarea")?.focus();
  }

  #moveClip(index, by, focusSelector) {
    const to = index + by;
    if (to < 0 || to >= this.#clips.length) return;
    [this.#clips[index], this.#clips[to]] = [this.#clips[to], this.#clips[index]];
    this.#renderClips();
    this.#changed();
    const row = byId("clip-editor").children[to];
    (row.querySelector(focusSelector) || row.querySelector("textarea")).focus();
  }

  #removeClip(index) {
    this.#clips.splice(index, 1);
    this.#renderClips();
    this.#changed();
    const rows = byId("clip-editor").children;
    (rows[Math.min(index, rows.length - 1)]?.querySelector("textarea") || byId("add-clip")).focus();
  }

  #renderClips() {
    const editor = byId("clip-editor");
    if (!this.#customClips) {
      editor.replaceChildren();
      return;
    }
    const last = this.#clips.length - 1;
    editor.replaceChildren(
      ...this.#clips.map((clip, index) => {
        const number = index + 1;
        const promptId = `clip-prompt-${clip.key}`;
        const secondsId = `clip-seconds-${clip.key}`;
        const seconds = h(
          "select",
          { id: secondsId, class: "clip-seconds" },
          CLIP_SECONDS.map((value) => h("option", { value, selected: value === clip.seconds }, `${value} s`)),
        );
        seconds.addEventListener("change", () => {
          clip.seconds = Number(seconds.value);
        });
        const prompt = h("textarea", {
          id: promptId,
          class: "clip-prompt",
          rows: 2,
          placeholder: "What happens in this clip",
        });
        prompt.value = clip.prompt;
        prompt.addEventListener("input", () => {
          clip.prompt = prompt.value;
        });
        return h(
          "li",
          { class: "clip-row", dataset: { key: clip.key } },
          h("span", { class: "clip-number", "aria-hidden": "true" }, number),
          h(
            "div",
            { class: "clip-fields" },
            h("label", { class: "visually-hidden", for: promptId }, `Clip ${number} prompt`),
            prompt,
            h(
              "div",
              { class: "clip-controls" },
              h("label", { class: "visually-hidden", for: secondsId }, `Clip ${number} length`),
              seconds,
              h(
                "button",
                {
                  type: "button",
                  class: "button ghost icon small clip-up",
                  "aria-label": `Move clip ${number} up`,
                  disabled: index === 0,
                  onclick: () => this.#moveClip(index, -1, ".clip-up"),
                },
                "↑",
              ),
              h(
                "button",
                {
                  type: "button",
                  class: "button ghost icon small clip-down",
                  "aria-label": `Move clip ${number} down`,
                  disabled: index === last,
                  onclick: () => this.#moveClip(index, 1, ".clip-down"),
                },
                "↓",
              ),
              h(
                "button",
                {
                  type: "button",
                  class: "button ghost icon small danger clip-remove",
                  "aria-label": `Remove clip ${number}`,
                  onclick: () => this.#removeClip(index),
                },
                "✕",
              ),
            ),
          ),
        );
      }),
    );
    byId("add-clip").disabled = this.#clips.length >= MAX_CLIPS;
    this.#showClipTotal();
  }

  // With clips written out, the length is their total.
  #showClipTotal() {
    const select = byId("seconds");
    const total = this.#clips.reduce((sum, clip) => sum + clip.seconds, 0);
    if ([...select.options].some((option) => Number(option.value) === total)) select.value = String(total);
  }

  #renderClipsHint() {
    const hint = byId("clips-hint");
    if (this.#customClips) {
      const total = this.#clips.reduce((sum, clip) => sum + clip.seconds, 0);
      hint.textContent =
        `${this.#clips.length} clips, ${total} s in all. ` +
        "Each clip starts from the last frame of the one before.";
    } else {
      hint.textContent =
        Number(byId("seconds").value) > LONGEST_CLIP
          ? "Vidflow splits your prompt into clips; the plan is under the price."
          : "Or pick a length over 20 s and let Vidflow plan the clips.";
    }
  }

  // ---- quote ---------------------------------------------------------------------------------

  #quoteSoon(delayMs) {
    clearTimeout(this.#quoteTimer);
    this.#quoteTimer = setTimeout(() => this.#quote(), delayMs);
  }

  async #quote() {
    this.#quoteAbort?.abort();
    const fields = this.#fields();
    const box = byId("quote");
    if (!fields.prompt.trim() && !(fields.segments && fields.segments.some((clip) => clip.prompt.trim()))) {
      this.#renderQuote("idle", { detail: "Write a prompt to see the price." });
      return;
    }
    const abort = new AbortController();
    this.#quoteAbort = abort;
    box.dataset.state = "loading";
    box.setAttribute("aria-busy", "true");
    try {
      const quote = await this.#api.request("POST", "/v1/billing/quote", {
        json: fields,
        signal: abort.signal,
      });
      this.#renderQuote("ready", { quote });
    } catch (error) {
      if (error.name === "AbortError") return;
      this.#renderQuote("error", { detail: error.message });
    } finally {
      if (this.#quoteAbort === abort) box.removeAttribute("aria-busy");
    }
  }

  #renderQuote(state, { quote = null, detail = "" }) {
    const box = byId("quote");
    box.dataset.state = state;
    byId("quote-amount").textContent = quote ? credits(quote.amount) : "—";
    const clips = byId("quote-clips");
    clips.replaceChildren();
    if (!quote) {
      byId("quote-detail").textContent = detail;
      box.dataset.sufficient = "";
      return;
    }
    box.dataset.sufficient = String(quote.sufficient);
    const { amount, available } = quote;
    byId("quote-detail").textContent = quote.sufficient
      ? `${credits(available)} available · ${credits(available - amount)} left after this video`
      : `Not enough credits: this video needs ${credits(amount)} and you have ${credits(available)}.`;
    for (const clip of quote.segments ?? []) {
      clips.append(
        h(
          "li",
          { class: "quote-clip" },
          h("span", { class: "quote-clip-seconds" }, `${clip.seconds} s`),
          h("span", { class: "quote-clip-prompt" }, clip.prompt),
        ),
      );
    }
  }

  // ---- create --------------------------------------------------------------------------------

  async #submit() {
    if (this.#busy) return;
    const error = byId("create-error");
    showError(error, null);
    const fields = this.#fields();
    let options;
    if (this.#references.length) {
      const form = new FormData();
      for (const [name, value] of Object.entries(fields)) {
        form.append(name, name === "segments" ? JSON.stringify(value) : value);
      }
      form.append("reference_fit", byId("reference-fit").value);
      for (const { file } of this.#references) form.append("input_reference", file, file.name);
      options = { form };
    } else {
      options = { json: fields };
    }
    this.#setBusy(true);
    try {
      const video = await this.#api.request("POST", "/v1/videos", {
        ...options,
        headers: { "Idempotency-Key": this.#draftKey },
      });
      this.#reset();
      this.#onCreated(video);
    } catch (failure) {
      showError(error, failure);
    } finally {
      this.#setBusy(false);
    }
  }

  #setBusy(busy) {
    this.#busy = busy;
    const button = byId("create-submit");
    button.disabled = busy;
    button.classList.toggle("loading", busy);
    button.textContent = busy ? "Sending…" : "Generate video";
  }

  // After a create: a fresh prompt, images and clips; model, length and size stay.
  #reset() {
    this.form.elements.prompt.value = "";
    for (const reference of this.#references) URL.revokeObjectURL(reference.url);
    this.#references = [];
    this.#renderReferences();
    if (this.#customClips) {
      byId("custom-clips").checked = false;
      this.#clips = [];
      this.#setCustomClips(false);
    }
    this.#changed();
  }
}

function newIdempotencyKey() {
  // getRandomValues works outside secure contexts too (randomUUID does not).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `webapp-${[...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}
