// The /v1 API with the user's key in the Authorization header. Every failure becomes an ApiError
// carrying the OpenAI-style error body's message, so the UI can show it as it is.

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `The server answered ${status}.`);
    this.name = "ApiError";
    this.status = status;
    this.code = error?.code ?? null;
    this.param = error?.param ?? null;
  }
}

const UNREACHABLE = "Cannot reach the server. Check your connection and try again.";

export class Api {
  #key;
  // Called on any 401 once signed in: the key was revoked or expired meanwhile.
  onUnauthenticated = null;

  constructor(key) {
    this.#key = key;
  }

  // Calls path; `json` or `form` is the body. Resolves to the parsed answer (null for 204) and,
  // when `withHeaders`, to {body, headers}.
  async request(method, path, { json, form, headers = {}, signal, withHeaders = false } = {}) {
    const init = { method, headers: { ...headers, Authorization: `Bearer ${this.#key}` }, signal };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form !== undefined) {
      init.body = form; // the browser writes the multipart boundary
    }
    const response = await this.#fetch(path, init);
    const body = response.status === 204 ? null : await readJson(response);
    if (!response.ok) {
      if (response.status === 401) this.onUnauthenticated?.();
      throw new ApiError(response.status, body?.error);
    }
    return withHeaders ? { body, headers: response.headers } : body;
  }

  // A file the API serves only with the key (a video's content): as a Blob.
  async blob(path, { signal } = {}) {
    const response = await this.#fetch(path, { headers: { Authorization: `Bearer ${this.#key}` }, signal });
    if (!response.ok) {
      if (response.status === 401) this.onUnauthenticated?.();
      throw new ApiError(response.status, (await readJson(response))?.error);
    }
    return response.blob();
  }

  // The key for the live socket's first message (browsers cannot set headers on a WebSocket).
  get key() {
    return this.#key;
  }

  async #fetch(path, init) {
    try {
      return await fetch(apiUrl(path), { ...init, cache: "no-store", credentials: "omit" });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, { message: UNREACHABLE });
    }
  }
}

// "/v1/..." relative to the page, so the app also works behind a proxy that mounts it under a prefix.
export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), document.baseURI);
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}
