// The control API as the dashboard calls it. The token comes once in the page's address
// (#token=…, which no request carries), is moved to this tab's sessionStorage and sent as a
// bearer header; no cookie is ever set, so another site's page cannot use it.

const TOKEN_KEY = 'licet-api-token';
// Every call gives up after this long, so a stuck daemon shows as a problem, not a hang.
const CALL_TIMEOUT_MS = 15000;

/** Moves a token from the address's fragment to sessionStorage; returns the token held. */
export function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/** A failed call: the daemon's error reply ({kind, message, refusal}) or what went wrong. */
export class ApiError extends Error {
  constructor(status, kind, message, refusal) {
    super(message);
    this.status = status;
    this.kind = kind;
    this.refusal = refusal ?? null;
  }
}

/** Calls METHOD PATH with BODY (an ArrayBuffer is sent as bytes, anything else as JSON). */
export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ''}` };
  let payload;
  if (body instanceof ArrayBuffer) {
    headers['Content-Type'] = 'application/octet-stream';
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: payload, cache: 'no-store', credentials: 'omit',
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the daemon does not answer (${e.message}); is licet-node run still running?`);
  }
  const text = await response.text();
  if (!response.ok) {
    let error;
    try { error = JSON.parse(text).error; } catch { error = null; }
    let message = error?.message ?? `${method} ${path}: HTTP ${response.status}`;
    if (response.status === 401) message += '; run `licet-node ui` for the current address';
    throw new ApiError(response.status, error?.kind ?? 'http', message, error?.refusal);
  }
  return text ? JSON.parse(text) : null;
}

export const get = (path) => call('GET', path);

/** The counters of /metrics (Prometheus text) as a map from name to value. */
export async function counters() {
  const response = await fetch('/metrics', { cache: 'no-store', credentials: 'omit',
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  if (!response.ok) throw new ApiError(response.status, 'http', `/metrics: HTTP ${response.status}`);
  const values = new Map();
  for (const line of (await response.text()).split('\n')) {
    const match = /^([a-z_]+) ([0-9.e+]+)$/.exec(line);
    if (match) values.set(match[1], Number(match[2]));
  }
  return values;
}
