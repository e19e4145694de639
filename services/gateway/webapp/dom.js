// Building DOM nodes without innerHTML, so text from the API (prompts, error messages) is never
// parsed as markup.

// h("button", {class: "button", onclick: f, "aria-label": "Close"}, "✕")
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  element.append(
    ...children.flat().filter((child) => child !== null && child !== undefined && child !== false),
  );
  return element;
}

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element;
}

export function showError(element, error) {
  element.textContent = error ? error.message || String(error) : "";
}

// A short message in the corner (the region is aria-live, so screen readers hear it too).
export function toast(message, kind = "info") {
  const region = byId("toasts");
  const item = h("div", { class: `toast ${kind}` }, message);
  region.append(item);
  setTimeout(() => item.classList.add("leaving"), 4000);
  setTimeout(() => item.remove(), 4400);
}
