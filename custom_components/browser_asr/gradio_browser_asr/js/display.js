// How numbers read: the JavaScript twin of explorer/display.py (the same vectors check both:
// tests/vectors/display.json). A missing or non-finite figure reads "–".

export const MISSING = "–";

const finite = (v) => (v === null || v === undefined || v === "" ? null : Number.isFinite(Number(v)) ? Number(v) : null);
const fixed = (v, digits) =>
  v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: true });

export function percent(fraction, digits = 1) {
  const v = finite(fraction);
  return v === null ? MISSING : `${fixed(v * 100, digits)} %`;
}

export function rtfx(value) {
  const v = finite(value);
  return v === null ? MISSING : `${fixed(v, 1)}×`;
}

export function seconds(value) {
  const v = finite(value);
  if (v === null) return MISSING;
  const size = Math.abs(v);
  if (size < 1) return `${fixed(v * 1000, 0)} ms`;
  if (size < 10) return `${v.toFixed(2)} s`;
  if (size < 100) return `${v.toFixed(1)} s`;
  return `${fixed(v, 0)} s`;
}

export function duration(value) {
  const v = finite(value);
  if (v === null) return MISSING;
  if (v < 60) return seconds(v);
  if (v < 3600) {
    const whole = Math.round(v);
    return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  }
  return `${fixed(v / 3600, 2)} h`;
}

export function count(value) {
  const v = finite(value);
  return v === null ? MISSING : fixed(Math.round(v), 0);
}

export function money(value) {
  const v = finite(value);
  if (v === null) return MISSING;
  if (v === 0 || Math.abs(v) >= 1) return `$${fixed(v, 2)}`;
  const decimals = Math.max(2, 1 - Math.floor(Math.log10(Math.abs(v))));
  return `$${v.toFixed(decimals)}`;
}

export function megabytes(value) {
  return finite(value) === null ? MISSING : `${count(value)} MB`;
}

export function clock(value) {
  const v = finite(value);
  if (v === null) return MISSING;
  const tenths = Math.round(Math.max(0, v) * 10);
  const hours = Math.floor(tenths / 36000);
  const minutes = Math.floor((tenths % 36000) / 600);
  const rest = tenths % 600;
  const secs = `${String(Math.floor(rest / 10)).padStart(2, "0")}.${rest % 10}`;
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}
