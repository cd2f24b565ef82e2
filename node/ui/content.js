// The content page: each item with its progress, rate, peers, state, licence window and
// refusal, a chunk map, and pause, resume and remove.

import { call } from './api.js';
import { drawChunkMap } from './graph.js';
import { bytes, el, fill, rate, shortId, when } from './format.js';

// Bytes held by each item at the previous poll, for its rate.
const previous = new Map();

/** Shows LIST (GET /v1/content) polled at time NOW (ms); ACT(promise, what) runs a button's call. */
export function render(list, now, act) {
  document.getElementById('content-empty').hidden = list.content.length > 0;
  fill('content-list', list.content.map((item) => card(item, itemRate(item, now), act)));
  const seen = new Set(list.content.map((i) => i.manifest_id));
  for (const id of previous.keys()) if (!seen.has(id)) previous.delete(id);
}

function itemRate(item, now) {
  const before = previous.get(item.manifest_id);
  previous.set(item.manifest_id, { now, have: item.have_bytes });
  if (!before || now <= before.now) return 0;
  return Math.max(0, item.have_bytes - before.have) / ((now - before.now) / 1000);
}

/** What the user sees as the state: a refusal overrides, since nothing moves then. */
export const shownState = (item) => (item.refused ? 'refused' : item.state);

function card(item, bytesPerSecond, act) {
  const percent = item.total_bytes ? Math.floor((item.have_bytes * 100) / item.total_bytes) : 100;
  const state = shownState(item);
  const map = el('canvas', { class: 'chunk-map', width: 640, height: 14, title: 'chunks held' });
  drawChunkMap(map, item.chunk_map ?? []);
  const licence = item.licence;
  const id = item.manifest_id;
  const actions = [];
  if (item.state === 'downloading') actions.push(button('Pause', () => act(call('POST', `/v1/content/${id}/pause`), `paused ${item.title}`)));
  if (item.state === 'paused') actions.push(button('Resume', () => act(call('POST', `/v1/content/${id}/resume`), `resumed ${item.title}`)));
  actions.push(button('Remove', () => {
    if (confirm(`Remove "${item.title}"? Its files stay on disk.`)) act(call('DELETE', `/v1/content/${id}`), `removed ${item.title}`);
  }, 'danger'));
  return el('article', { class: 'item', 'data-id': id, 'data-state': state },
    el('div', { class: 'item-head' },
      el('span', { class: 'title' }, item.title),
      el('span', { class: `state ${state}` }, state),
      el('span', { class: 'percent' }, `${percent}%`),
      el('span', { class: 'id muted', title: item.link }, shortId(id))),
    el('progress', { max: 100, value: percent }),
    map,
    el('div', { class: 'item-facts' },
      el('span', {}, `${bytes(item.have_bytes)} of ${bytes(item.total_bytes)}`),
      el('span', {}, `${item.have_chunks} of ${item.total_chunks} chunks`),
      el('span', {}, rate(bytesPerSecond)),
      el('span', {}, `${item.sending_peers} sending, ${item.source_peers} sent so far`),
      el('span', {}, licence ? `licence ${when(licence.not_before)} – ${licence.not_after ? when(licence.not_after) : 'no end'}${licence.regions.length ? ` in ${licence.regions.join(', ')}` : ''}` : ''),
      el('span', { class: 'mono' }, item.dir)),
    item.refused ? el('p', { class: 'refusal' }, `Refused: ${item.refused.reason} — ${item.refused.detail}`) : null,
    item.error ? el('p', { class: 'error' }, item.error) : null,
    el('div', { class: 'actions' }, actions));
}

function button(text, onClick, kind) {
  const b = el('button', { type: 'button', class: kind }, text);
  b.addEventListener('click', onClick);
  return b;
}
