// How numbers, sizes and times read in the app.

const numbers = new Intl.NumberFormat(undefined);

export function credits(amount) {
  return `${numbers.format(amount)} ${amount === 1 ? "credit" : "credits"}`;
}

export function count(amount) {
  return numbers.format(amount);
}

// "1280x720" -> "1280 × 720"
export function sizeLabel(size) {
  return size.replace("x", " × ");
}

export function orientation(size) {
  const [width, height] = size.split("x").map(Number);
  return width === height ? "Square" : width > height ? "Landscape" : "Portrait";
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const STEPS = [
  [60, "second"],
  [60, "minute"],
  [24, "hour"],
  [7, "day"],
  [4.35, "week"],
  [12, "month"],
  [Infinity, "year"],
];

export function timeAgo(unixSeconds) {
  let value = unixSeconds - Date.now() / 1000;
  for (const [size, unit] of STEPS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return "";
}

export function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
