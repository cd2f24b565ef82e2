// Pictures on canvases: the node's transfer rate over the last minutes, and a content item's
// chunk map. Canvases need no inline style, so the page's CSP stays strict.

// Samples kept: at one poll every 2 s, the last 4 minutes.
const RATE_SAMPLES = 120;

/** The download and upload rates of the last RATE_SAMPLES polls. */
export class RateHistory {
  constructor() { this.samples = []; this.last = null; }

  /** Adds a sample from the byte counters IN and OUT read at time NOW (ms); returns the rates. */
  add(now, bytesIn, bytesOut) {
    let sample = { down: 0, up: 0 };
    if (this.last && now > this.last.now) {
      const seconds = (now - this.last.now) / 1000;
      sample = {
        down: Math.max(0, bytesIn - this.last.bytesIn) / seconds,
        up: Math.max(0, bytesOut - this.last.bytesOut) / seconds,
      };
    }
    this.last = { now, bytesIn, bytesOut };
    this.samples.push(sample);
    if (this.samples.length > RATE_SAMPLES) this.samples.shift();
    return sample;
  }
}

const color = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** Draws HISTORY on CANVAS, scaled to its largest rate, labelled with LABEL(rate). */
export function drawRates(canvas, history, label) {
  const g = canvas.getContext('2d');
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const top = Math.max(1, ...history.samples.map((s) => Math.max(s.down, s.up)));
  const step = width / (RATE_SAMPLES - 1);
  const x0 = width - (history.samples.length - 1) * step;
  for (const [key, name] of [['down', '--accent'], ['up', '--up']]) {
    g.strokeStyle = color(name);
    g.lineWidth = 2;
    g.beginPath();
    history.samples.forEach((s, i) => {
      const y = height - 4 - (s[key] / top) * (height - 24);
      if (i === 0) g.moveTo(x0 + i * step, y); else g.lineTo(x0 + i * step, y);
    });
    g.stroke();
  }
  g.fillStyle = color('--muted');
  g.font = '12px system-ui, sans-serif';
  g.fillText(`peak ${label(top)}`, 8, 14);
}

/** Draws a chunk map (percentages held, one per cell) on CANVAS. */
export function drawChunkMap(canvas, cells) {
  const g = canvas.getContext('2d');
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  g.fillStyle = color('--line');
  g.fillRect(0, 0, width, height);
  const cell = width / Math.max(1, cells.length);
  const accent = color('--accent');
  cells.forEach((percent, i) => {
    if (percent === 0) return;
    g.globalAlpha = 0.25 + 0.75 * (percent / 100);
    g.fillStyle = accent;
    g.fillRect(i * cell, 0, Math.ceil(cell), height);
  });
  g.globalAlpha = 1;
}
