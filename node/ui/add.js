// The add page: download by share link, or seed a folder with its signed manifest.

import { call } from './api.js';

// The largest signed manifest the daemon takes; a bigger file is refused here, unread.
const MAX_MANIFEST_BYTES = 16779648;

/** Wires the two forms; ACT(promise, what) runs a call and reports it, DONE() refreshes. */
export function init(act) {
  const result = document.getElementById('add-result');
  const byLink = document.getElementById('add-link');
  byLink.addEventListener('submit', (event) => {
    event.preventDefault();
    const form = new FormData(byLink);
    const request = {
      link: form.get('link').trim(),
      output_dir: form.get('output_dir').trim(),
      replace: form.get('replace') === 'on',
    };
    report(result, act(call('POST', '/v1/downloads', request), 'download started'),
      (info) => `Downloading "${info.title}" into ${info.dir}: follow it on the Content page.`);
  });
  const seed = document.getElementById('add-seed');
  seed.addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = new FormData(seed);
    const manifest = form.get('manifest');
    if (manifest.size > MAX_MANIFEST_BYTES) {
      show(result, 'failed', `${manifest.name} is ${manifest.size} bytes, larger than any signed manifest`);
      return;
    }
    const dir = encodeURIComponent(form.get('content_dir').trim());
    const bytes = await manifest.arrayBuffer();
    report(result, act(call('POST', `/v1/content?content_dir=${dir}`, bytes), 'content added'),
      (info) => `Seeding "${info.title}" from ${info.dir}.`);
  });
}

function report(result, promise, success) {
  show(result, '', 'Working…');
  promise.then((info) => show(result, 'ok', success(info)),
    (e) => show(result, 'failed', e.refusal ? `${e.message} (${e.refusal.reason})` : e.message));
}

function show(result, kind, text) {
  result.className = kind;
  result.textContent = text;
}
