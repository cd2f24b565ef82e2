// The overview page: who the node is, how it is reached, and how much it moves.

import { drawRates } from './graph.js';
import { bytes, duration, el, fact, fill, rate } from './format.js';

/** Shows STATUS (GET /v1/status), the byte COUNTERS of /metrics and the rate HISTORY. */
export function render(status, counters, history) {
  const now = history.samples.at(-1) ?? { down: 0, up: 0 };
  const c = status.content;
  const problems = [
    status.health.database_problem,
    status.health.clock_behind_seconds ? `the clock is ${duration(status.health.clock_behind_seconds)} behind the newest catalog` : null,
  ].filter(Boolean);
  fill('overview-facts',
    fact('Peer id', el('span', { class: 'id', title: status.peer_id }, status.peer_id)),
    fact('Reachability', status.network.reachability),
    fact('Connected peers', String(status.connected_peers)),
    fact('Download', rate(now.down)),
    fact('Upload', rate(now.up)),
    fact('Received in total', bytes(counters.get('licet_bytes_in_total') ?? 0)),
    fact('Sent in total', bytes(counters.get('licet_bytes_out_total') ?? 0)),
    fact('Content', `${c.complete} complete, ${c.downloading} downloading, ${c.paused} paused, ${c.failed} failed`),
    fact('Trusted publishers', String(status.trusted_publishers)),
    fact('Region', status.region ?? 'none'),
    fact('Up for', duration(status.uptime_seconds)),
    fact('Version', status.version),
    fact('Health', problems.length ? problems.join('; ') : 'ok'),
  );
  const addrs = [
    ...status.listen_addrs.map((a) => ['listening', a]),
    ...status.network.public_addrs.map((a) => ['public', a]),
    ...status.network.relayed_addrs.map((a) => ['through a relay', a]),
  ];
  fill('overview-addrs', addrs.map(([kind, a]) => el('li', {}, `${a} `, el('span', { class: 'muted' }, `(${kind})`))));
  drawRates(document.getElementById('rate-graph'), history, rate);
}
