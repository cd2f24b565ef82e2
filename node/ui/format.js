// Formatting for people, and el(), the one way the dashboard builds DOM: text goes in as text
// (titles, names and errors come from publishers and peers), never as HTML.

/** An element TAG with ATTRS (class, data-*, …) and CHILDREN (nodes or text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

/** Replaces the children of the element with id ID. */
export function fill(id, ...children) {
  document.getElementById(id).replaceChildren(...children.flat());
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n) {
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

export const rate = (n) => `${bytes(Math.max(0, n))}/s`;

export const limit = (n) => (n ? rate(n) : 'none');

export const shortId = (hex) => (hex.length > 16 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex);

export function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** An RFC 3339 time as this browser's local date and time. */
export const when = (text) => (text ? new Date(text).toLocaleString() : '—');

/** A labelled figure for a row of cards. */
export const fact = (label, value) =>
  el('div', { class: 'fact' }, el('div', { class: 'label' }, label), el('div', { class: 'value' }, value));
