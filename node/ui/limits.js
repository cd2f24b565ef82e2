// The limits page: the bandwidth limits in force, configured and changed, and a form to change
// them until restart.

import { call } from './api.js';
import { fact, fill, limit } from './format.js';

const RATES = ['upload', 'download', 'peer_upload', 'peer_download'];
const NAMES = { upload: 'Upload', download: 'Download', peer_upload: 'Upload per peer', peer_download: 'Download per peer' };

/** Shows LIMITS (GET /v1/limits). */
export function render(limits) {
  fill('limits-facts',
    RATES.map((r) => fact(NAMES[r], `${limit(limits.in_force[r])} (configured ${limit(limits.configured[r])})`)),
    fact('Schedule rule in force', limits.schedule_active ?? 'none'),
    fact('LAN peers', limits.lan_exempt ? 'exempt' : 'limited'));
}

/** Wires the form; ACT runs a call and reports it. */
export function init(act) {
  const form = document.getElementById('limits-set');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const change = {};
    for (const r of RATES) {
      const text = data.get(r).trim();
      if (text !== '') change[r] = Number(text);
    }
    act(call('PUT', '/v1/limits', change), 'limits changed').then(() => form.reset(), () => {});
  });
  document.getElementById('limits-reset').addEventListener('click', () => {
    act(call('PUT', '/v1/limits', { reset: true }), 'limits back to the configured ones');
  });
}
