// Historical playback: a window played through the host view's charts at 1×, 10× or 60×, with
// pause, steps and a scrubber. The charts show the `span` before the playback time; history is
// fetched ahead in chunks (two spans at a time), so a 24 h replay never loads the whole day.
// Leaving playback returns to the live window the view had before.

import { els, state } from './store.js';
import { getJSON, historyUrl } from './api.js';
import { DEVICE_KINDS, setWindow, stepFor, windowRange } from './detail.js';
import { fmtDateTime, isNum, lowerBound, setText } from './format.js';
import { scheduleFlush } from './render.js';

const FRAME_MS = 200; // how often the playback time moves
const SPEEDS = [1, 10, 60];
const SPAN_MIN_MS = 60 * 1000;
const SPAN_MAX_MS = 6 * 60 * 60 * 1000;

let pb = null; // the playback, when one is on

// For tests and debugging.
window.hostwatch.playback = () => (pb ? { from: pb.from, to: pb.to, t: pb.t, span: pb.span, speed: pb.speed, playing: pb.playing } : null);

// What the charts show during playback: points up to the playback time, and its range.
export function playbackView() {
  if (!pb || !state.detail) return null;
  // Computed once per playback time and data: uPlot asks for the range of every chart.
  if (pb.view && pb.view.t === pb.t && pb.view.version === pb.version) return pb.view.value;
  const lo = lowerBound(pb.points, pb.t - pb.span - (pb.step || 0), (p) => p.ts);
  const hi = lowerBound(pb.points, pb.t + 1, (p) => p.ts);
  const devices = {};
  for (const [kind, byName] of Object.entries(pb.devices)) {
    devices[kind] = {};
    for (const [name, pts] of Object.entries(byName)) {
      devices[kind][name] = pts.slice(lowerBound(pts, pb.t - pb.span - (pb.step || 0), (p) => p.ts), lowerBound(pts, pb.t + 1, (p) => p.ts));
    }
  }
  const value = { points: pb.points.slice(lo, hi), devices, step: pb.step, range: [pb.t - pb.span, pb.t] };
  pb.view = { t: pb.t, version: pb.version, value };
  return value;
}

// The range shown during playback, without slicing the data (null when not playing back).
export function playbackRange() {
  return pb && state.detail ? [pb.t - pb.span, pb.t] : null;
}

// Starts playback of the window shown (or toggles play and pause when it is on).
export function enterPlayback(play) {
  const d = state.detail;
  if (!d) return;
  if (pb) {
    setPlaying(!pb.playing);
    return;
  }
  const [from, to] = d.win.kind === 'fixed' ? [d.win.from, d.win.to] : windowRange(d.win);
  const span = Math.min(Math.max((to - from) / 4, SPAN_MIN_MS), SPAN_MAX_MS, to - from);
  pb = {
    from,
    to,
    span,
    t: from + span,
    speed: 1,
    playing: false,
    step: stepFor(span, state.hosts.get(d.id), from),
    version: 0, // bumped when data arrives
    view: null,
    lastFrame: 0,
    dragging: false,
    points: [],
    devices: {},
    loadedFrom: from,
    loadedTo: from, // history is loaded for [loadedFrom, loadedTo)
    fetching: null,
    generation: 0,
    timer: null,
    returnTo: d.win.kind === 'live' ? d.win : { kind: 'live', key: '15m' },
  };
  els.playback.hidden = false;
  els.play.setAttribute('aria-pressed', 'true');
  els.pbScrubber.min = String(Math.floor(from));
  els.pbScrubber.max = String(Math.ceil(to));
  els.pbScrubber.step = '1000';
  seek(pb.t);
  setSpeed(1);
  setPlaying(play !== false);
}

// Stops playback without touching the window (the view closes, or another window is chosen).
export function stopPlayback() {
  if (!pb) return;
  clearInterval(pb.timer);
  pb = null;
  els.playback.hidden = true;
  els.play.setAttribute('aria-pressed', 'false');
}

// Leaves playback; `toLive`: back to the live window the view had before.
export function exitPlayback(toLive) {
  if (!pb) return;
  const back = pb.returnTo;
  stopPlayback();
  if (toLive) setWindow(back, { url: true });
}

function setPlaying(playing) {
  if (!pb) return;
  if (playing && pb.t >= pb.to) seek(pb.from + pb.span); // played to the end: from the start
  pb.playing = playing;
  pb.lastFrame = 0;
  clearInterval(pb.timer);
  pb.timer = playing ? setInterval(frame, FRAME_MS) : null;
  els.pbToggle.setAttribute('aria-pressed', String(playing));
  setText(els.pbToggle, playing ? 'Pause' : 'Play');
}

function setSpeed(speed) {
  if (!pb || !SPEEDS.includes(speed)) return;
  pb.speed = speed;
  for (const b of els.pbSpeed.querySelectorAll('button')) b.setAttribute('aria-pressed', String(Number(b.dataset.speed) === speed));
}

function frame() {
  if (!pb) return;
  // By the time that passed, not the number of ticks (a busy or background tab ticks late).
  const now = performance.now();
  const elapsed = pb.lastFrame ? Math.min(now - pb.lastFrame, 2000) : FRAME_MS;
  pb.lastFrame = now;
  let t = pb.t + elapsed * pb.speed;
  if (t >= pb.to) {
    t = pb.to;
    setPlaying(false);
  }
  // Waiting for the next chunk holds the time where the data ends, rather than running on
  // into charts without data.
  if (t > pb.loadedTo && pb.loadedTo < pb.to) {
    t = Math.max(pb.t, pb.loadedTo);
  }
  move(t);
}

// Moves the playback time without a jump (play, step): fetches ahead as needed.
function move(t) {
  pb.t = Math.min(Math.max(t, pb.from), pb.to);
  fetchAhead();
  render();
}

// Jumps to a time (the scrubber): history around it is loaded afresh if it is not there.
function seek(t) {
  pb.t = Math.min(Math.max(t, pb.from), pb.to);
  if (pb.t - pb.span < pb.loadedFrom || pb.t > pb.loadedTo) {
    pb.generation++;
    pb.fetching = null;
    pb.points = [];
    pb.devices = {};
    pb.loadedFrom = Math.max(pb.from, pb.t - pb.span);
    pb.loadedTo = pb.loadedFrom;
  }
  fetchAhead();
  render();
}

// Keeps the next span of history loaded; one chunk request at a time.
function fetchAhead() {
  if (pb.fetching || pb.loadedTo >= pb.to || pb.loadedTo - pb.t > pb.span) return;
  const d = state.detail;
  const gen = pb.generation;
  const from = pb.loadedTo;
  // Chunk ends on a step boundary, so no bucket is split between two chunks.
  let to = Math.min(pb.to, from + 2 * pb.span);
  if (pb.step && to < pb.to) to = Math.max(from + pb.step, Math.floor(to / pb.step) * pb.step);
  const mine = pb;
  pb.fetching = getJSON(historyUrl(d.id, from, to, pb.step, null, 'host,' + DEVICE_KINDS), 20000).then((res) => {
    if (pb !== mine || gen !== pb.generation) return;
    for (const p of Array.isArray(res.points) ? res.points : []) if (p && isNum(p.ts)) pb.points.push(p);
    for (const [kind, byName] of Object.entries(res.devices || {})) {
      const into = pb.devices[kind] || (pb.devices[kind] = {});
      for (const [name, pts] of Object.entries(byName)) {
        (into[name] || (into[name] = [])).push(...pts.filter((p) => p && isNum(p.ts)));
      }
    }
    pb.loadedTo = to;
    pb.version++;
    // Only what the charts can still show is kept; a jump back before it loads it again.
    const cutoff = pb.t - 2 * pb.span;
    const keep = lowerBound(pb.points, cutoff, (p) => p.ts);
    if (keep > 0) pb.points.splice(0, keep);
    for (const byName of Object.values(pb.devices)) {
      for (const pts of Object.values(byName)) {
        const k = lowerBound(pts, cutoff, (p) => p.ts);
        if (k > 0) pts.splice(0, k);
      }
    }
    pb.loadedFrom = Math.max(pb.loadedFrom, cutoff);
    render();
  }).catch(() => {
    // Retried on the next frame or step.
  }).finally(() => {
    if (pb === mine && gen === pb.generation) pb.fetching = null;
  });
}

function render() {
  if (!pb) return;
  if (!pb.dragging) els.pbScrubber.value = String(Math.round(pb.t));
  setText(els.pbTime, fmtDateTime(pb.t));
  els.pbTime.setAttribute('datetime', new Date(pb.t).toISOString());
  if (state.detail) {
    state.detail.dirty = true;
    scheduleFlush();
  }
}

function step(direction) {
  if (!pb) return;
  setPlaying(false);
  const by = Math.max(pb.step || 0, pb.span / 30);
  if (direction < 0) seek(pb.t - by);
  else move(pb.t + by);
}

// Space plays and pauses (starting playback of the window shown), arrows step. During
// playback they do so even on a focused button (Enter still presses it); text fields keep them.
export function playbackKey(e) {
  const target = e.target;
  const tag = target && target.tagName;
  if (tag === 'INPUT' && target !== els.pbScrubber) return;
  if (tag === 'TEXTAREA' || tag === 'SELECT' || (target && target.isContentEditable)) return;
  if (tag === 'BUTTON' && !pb) return;
  if (els.removeDialog.open) return;
  if (e.key === ' ') {
    e.preventDefault();
    enterPlayback(true);
  } else if (pb && (e.key === 'ArrowRight' || e.key === 'ArrowLeft')) {
    e.preventDefault();
    step(e.key === 'ArrowRight' ? 1 : -1);
  }
}

export function bindPlaybackControls() {
  els.pbToggle.addEventListener('click', () => setPlaying(!(pb && pb.playing)));
  els.pbBack.addEventListener('click', () => step(-1));
  els.pbForward.addEventListener('click', () => step(1));
  els.pbExit.addEventListener('click', () => exitPlayback(true));
  for (const b of els.pbSpeed.querySelectorAll('button')) b.addEventListener('click', () => setSpeed(Number(b.dataset.speed)));
  els.pbScrubber.addEventListener('input', () => {
    if (pb) seek(Number(els.pbScrubber.value));
  });
  // While the operator drags the scrubber, playing does not pull it from under the pointer.
  els.pbScrubber.addEventListener('pointerdown', () => {
    if (pb) pb.dragging = true;
  });
  window.addEventListener('pointerup', () => {
    if (pb) pb.dragging = false;
  });
}
