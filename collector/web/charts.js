// uPlot helpers shared by the overview and the host view: mounting, sizing, theming, axes.

import { root } from './store.js';
import { isNum } from './format.js';

// Points further apart than this are drawn with a gap between them, not joined by a line.
export function gapThreshold(host, step) {
  if (step) return step * 2.5;
  const interval = host && isNum(host.interval_ms) && host.interval_ms > 0 ? host.interval_ms : 1000;
  return Math.max(interval * 3.5, 5000);
}

// uPlot helpers

export const chartTheme = { axis: '#666', grid: 'rgba(0,0,0,.08)', text: '#333' };

export function readChartTheme() {
  const cs = getComputedStyle(root);
  chartTheme.axis = cs.getPropertyValue('--chart-axis').trim() || chartTheme.axis;
  chartTheme.grid = cs.getPropertyValue('--chart-grid').trim() || chartTheme.grid;
}

export function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return 'rgba(' + ((n >> 16) & 255) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + a + ')';
}

// Every uPlot instance, with the height it wants; resized with its container.
export const sized = new Map(); // container element -> { u, height }
export const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const s = sized.get(entry.target);
    if (!s) continue;
    const width = Math.floor(entry.contentRect.width);
    if (width > 0 && (width !== s.u.width || s.height !== s.u.height)) {
      s.u.setSize({ width, height: s.height });
    }
  }
});

export function mountChart(container, opts, data) {
  const width = Math.floor(container.clientWidth) || 300;
  const u = new uPlot(Object.assign({ width, ms: 1 }, opts), data, container);
  sized.set(container, { u, height: opts.height });
  resizer.observe(container);
  return u;
}

export function unmountChart(container, u) {
  if (!u) return;
  resizer.unobserve(container);
  sized.delete(container);
  u.destroy();
}

export function redrawAllCharts() {
  readChartTheme();
  for (const { u } of sized.values()) u.redraw(false, true);
}

export function axisStyle(extra) {
  return Object.assign({
    stroke: () => chartTheme.axis,
    grid: { stroke: () => chartTheme.grid, width: 1 },
    ticks: { stroke: () => chartTheme.grid, width: 1, size: 4 },
    font: '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
  }, extra);
}

export function sparkOptions(label, color, height, xRange) {
  return {
    height,
    class: 'spark-plot',
    legend: { show: false },
    cursor: { show: false },
    select: { show: false },
    padding: [3, 0, 1, 0],
    scales: { x: { time: true, range: xRange }, y: { range: [0, 100] } },
    axes: [{ show: false }, { show: false }],
    series: [
      {},
      { label, stroke: color, width: 1.5, fill: alpha(color, 0.18), points: { show: false } },
    ],
  };
}

// Axis steps for byte values: 1, 2, 4 … 512 times a power of 1024 (0, 2 GiB, 4 GiB, …).
export const BINARY_INCRS = [];
for (let k = 0; k < 6; k++) {
  for (let m = 1; m < 1024; m *= 2) BINARY_INCRS.push(m * Math.pow(1024, k));
}

// Width of a y axis from its longest label.
export function axisSize(u, values, axisIdx, cycleNum) {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return axis._size; // avoid endless re-measuring
  let longest = 0;
  for (const v of values || []) longest = Math.max(longest, String(v).length);
  return Math.max(32, Math.ceil(longest * 6.4) + 14);
}

export function lastValue(col) {
  if (!col) return null;
  for (let i = col.length - 1; i >= 0; i--) if (isNum(col[i])) return col[i];
  return null;
}

export const hhmm = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
export const hhmmss = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function timeTicks(u, splits) {
  const span = u.scales.x.max - u.scales.x.min;
  const f = span < 5 * 60 * 1000 ? hhmmss : hhmm;
  return splits.map((v) => f.format(v));
}

export function coreColor(i, n) {
  const hue = Math.round((210 + (i * 360) / Math.max(n, 1)) % 360);
  return 'hsl(' + hue + ' 70% 55%)';
}
