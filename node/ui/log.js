// The log page: the daemon's recent log lines (GET /v1/log, at most 500), newest first.

import { el, fill } from './format.js';

/** Shows LOG (GET /v1/log). */
export function render(log) {
  fill('log-lines', [...log.lines].reverse().map((line) => el('tr', { class: `level-${line.level.toLowerCase()}` },
    el('td', { class: 'mono', title: line.time }, new Date(line.time).toLocaleTimeString()),
    el('td', {}, line.level),
    el('td', { class: 'mono' }, line.target),
    el('td', {}, line.message))));
}
