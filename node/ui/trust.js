// The trust and catalogs page: each trusted publisher with its newest catalog (sequence,
// expiry, entries, revoked counts), trust and untrust.

import { call } from './api.js';
import { el, fill, shortId, when } from './format.js';

/** Shows CATALOGS (GET /v1/catalogs: one per trusted publisher); ACT runs a button's call. */
export function render(catalogs, act) {
  fill('trust-rows', catalogs.catalogs.map((c) => {
    const untrust = el('button', { type: 'button', class: 'danger' }, 'Untrust');
    untrust.addEventListener('click', () => {
      if (confirm(`Stop trusting ${c.name ?? c.publisher}? Its content is then neither served nor fetched.`)) {
        act(call('DELETE', `/v1/trust/${c.publisher}`), `untrusted ${c.name ?? shortId(c.publisher)}`);
      }
    });
    const options = [c.require_catalog && 'catalog required', c.mirror && 'mirrored'].filter(Boolean);
    return el('tr', { 'data-publisher': c.publisher },
      el('td', { class: 'id', title: c.publisher }, shortId(c.publisher)),
      el('td', {}, c.name ?? ''),
      el('td', {}, c.sequence === null ? 'none yet' : `sequence ${c.sequence}`),
      el('td', { class: c.expired ? 'refusal' : '' }, c.expires_at ? `${when(c.expires_at)}${c.expired ? ' (expired)' : ''}` : '—'),
      el('td', {}, String(c.entries)),
      el('td', {}, `${c.revoked_manifests} manifests, ${c.revoked_delegates} delegates`),
      el('td', {}, options.join(', ')),
      el('td', {}, untrust));
  }));
}

/** Wires the trust form. */
export function init(act) {
  const form = document.getElementById('trust-add');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const request = {
      publisher: data.get('publisher').trim().toLowerCase(),
      name: data.get('name').trim() || null,
      require_catalog: data.get('require_catalog') === 'on',
      mirror: data.get('mirror') === 'on',
    };
    act(call('POST', '/v1/trust', request), `trusted ${request.name ?? shortId(request.publisher)}`)
      .then(() => form.reset(), () => {});
  });
}
