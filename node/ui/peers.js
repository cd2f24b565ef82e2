// The peers page: connected peers and what they moved, banned peers and why.

import { bytes, el, fill, shortId, when } from './format.js';

/** Shows PEERS (GET /v1/peers). */
export function render(peers) {
  const connected = peers.peers.filter((p) => p.addrs.length > 0);
  const banned = peers.peers.filter((p) => p.banned);
  fill('peers-connected', connected.map((p) => el('tr', {},
    el('td', { class: 'id', title: p.peer_id }, shortId(p.peer_id)),
    el('td', { class: 'mono' }, `${p.addrs[0]}${p.addrs.length > 1 ? ` +${p.addrs.length - 1}` : ''}${p.relayed ? ' (relayed)' : ''}`),
    el('td', {}, bytes(p.bytes_in)),
    el('td', {}, bytes(p.bytes_out)))));
  fill('peers-banned', banned.map((p) => el('tr', {},
    el('td', { class: 'id', title: p.peer_id }, shortId(p.peer_id)),
    el('td', {}, p.ban_reason ?? ''),
    el('td', {}, when(p.banned_until)),
    el('td', {}, String(p.offences)))));
}
