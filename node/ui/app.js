// The dashboard's entry: takes the token, switches pages, and polls the control API every
// POLL_MS, redrawing the pages without reloading. A failed poll shows why and tries again.

import { counters, get, takeToken } from './api.js';
import { RateHistory } from './graph.js';
import * as add from './add.js';
import * as content from './content.js';
import * as limits from './limits.js';
import * as log from './log.js';
import * as overview from './overview.js';
import * as peers from './peers.js';
import * as trust from './trust.js';

const POLL_MS = 2000;
const history = new RateHistory();
const problem = document.getElementById('problem');

function showProblem(text) {
  problem.textContent = text;
  problem.hidden = !text;
}

function showPage(name) {
  for (const section of document.querySelectorAll('.page')) section.classList.toggle('active', section.id === name);
  for (const button of document.querySelectorAll('#tabs button')) button.classList.toggle('active', button.dataset.page === name);
  sessionStorage.setItem('licet-page', name);
}

/** Runs PROMISE (a call a button or form made), reports a failure, and polls at once after. */
function act(promise, what) {
  return promise.then((reply) => {
    showProblem('');
    document.getElementById('updated').textContent = `${what}`;
    poll();
    return reply;
  }, (e) => {
    showProblem(e.refusal ? `${e.message} (${e.refusal.reason})` : e.message);
    throw e;
  });
}

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  try {
    const [status, list, catalogs, peerList, limitList, logLines, metrics] = await Promise.all([
      get('/v1/status'), get('/v1/content'), get('/v1/catalogs'), get('/v1/peers'), get('/v1/limits'), get('/v1/log'),
      counters(),
    ]);
    const now = performance.now();
    history.add(now, metrics.get('licet_bytes_in_total') ?? 0, metrics.get('licet_bytes_out_total') ?? 0);
    overview.render(status, metrics, history);
    content.render(list, now, act);
    trust.render(catalogs, act);
    peers.render(peerList);
    limits.render(limitList);
    log.render(logLines);
    showProblem('');
    document.getElementById('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    showProblem(e.message);
  } finally {
    polling = false;
  }
}

if (!takeToken()) {
  showProblem('No API token: open the address `licet-node ui` prints (it ends in #token=…).');
} else {
  for (const button of document.querySelectorAll('#tabs button')) {
    button.addEventListener('click', () => showPage(button.dataset.page));
  }
  const pages = [...document.querySelectorAll('.page')].map((section) => section.id);
  const remembered = sessionStorage.getItem('licet-page');
  showPage(pages.includes(remembered) ? remembered : 'overview');
  add.init(act);
  trust.init(act);
  limits.init(act);
  poll();
  setInterval(poll, POLL_MS);
}
