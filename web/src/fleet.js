// The live fleet as the browser sees it (pure: time is an argument, no DOM, no map).
//
// Positions arrive from the hub (docs/protocol.md §9) at any rate; `push` only records the
// newest per vehicle (client-side coalescing), `apply` folds them in once per animation frame,
// and `at(now)` gives each vehicle's displayed position, interpolated from where it was shown
// to where it was reported, so markers glide instead of jumping.

// A vehicle reporting faster than this moves in a straight line between fixes, never longer.
export const MAX_GLIDE_MS = 2000;
// Below this a vehicle is parked (GNSS speed noise at a standstill stays under ~2 km/h).
export const PARKED_KMH = 3;
// No fix for this long: the position is stale (the agent sends at least every few seconds).
export const STALE_S = 60;
// No fix for this long, or no link: offline.
export const OFFLINE_S = 300;

export const STATES = ["moving", "parked", "stale", "offline", "alert"];

export function classify(v, nowMs) {
  if (v.openAlerts > 0) return "alert";
  const age = v.timeMs == null ? Infinity : (nowMs - v.timeMs) / 1000;
  if (age > OFFLINE_S || v.connected === false) return "offline";
  if (age > STALE_S) return "stale";
  return (v.speed ?? 0) >= PARKED_KMH ? "moving" : "parked";
}

function lerpAngle(a, b, f) {
  const d = ((b - a + 540) % 360) - 180;
  return (a + d * f + 360) % 360;
}

/** How far (px) a gliding vehicle's marker travels in its whole glide at `pxPerDeg` (Web
 * Mercator, per degree of longitude), its turn counted at `tipPx` from the marker's centre. */
export function glidePx(v, pxPerDeg, tipPx) {
  const dx = Math.abs(v.lon - v.from.lon);
  const dy = Math.abs(v.lat - v.from.lat) / Math.cos((v.lat * Math.PI) / 180);
  const turn = Math.abs(((v.course - v.from.course + 540) % 360) - 180);
  return Math.hypot(dx, dy) * pxPerDeg + ((turn * Math.PI) / 180) * tipPx;
}

export class Fleet {
  constructor() {
    this.vehicles = new Map(); // id → vehicle record
    this.pending = new Map(); // id → newest feature not yet applied
    this.version = 0; // bumps whenever something other than a position changes
  }

  /** Record a hub position (a GeoJSON feature); the newest device time per vehicle wins. */
  push(feature) {
    const p = feature.properties;
    const [lon, lat] = feature.geometry.coordinates;
    this.pushFix(p.vehicle, Date.parse(p.time), lon, lat, p.speed_kmh, p.course_deg);
  }

  /** Record a position given field by field (fixes.js `unpack`); the newest device time wins. */
  pushFix(id, t, lon, lat, speed, course) {
    const prev = this.pending.get(id);
    if (!prev || prev.t < t) this.pending.set(id, { t, lon, lat, speed, course });
  }

  /** Fold pending positions in; returns how many vehicles got a new position. */
  apply(nowMs) {
    let n = 0;
    for (const [id, { t, lon, lat, speed, course }] of this.pending) {
      const v = this.ensure(id);
      if (v.timeMs != null && t <= v.timeMs) continue;
      const shown = v.lon == null ? null : this.shown(v, nowMs);
      const gap = v.timeMs == null ? 0 : t - v.timeMs;
      v.from = shown ? { lon: shown.lon, lat: shown.lat, course: shown.course } : { lon, lat, course: course ?? 0 };
      v.fromMs = nowMs;
      v.glideMs = Math.min(Math.max(gap, 0), MAX_GLIDE_MS);
      v.lon = lon;
      v.lat = lat;
      v.timeMs = t;
      v.speed = speed;
      v.course = course ?? v.from.course;
      n++;
    }
    this.pending.clear();
    return n;
  }

  ensure(id) {
    let v = this.vehicles.get(id);
    if (!v) {
      v = { id, lon: null, lat: null, timeMs: null, speed: null, course: 0, openAlerts: 0,
            connected: null, detail: null, from: null, fromMs: 0, glideMs: 0 };
      this.vehicles.set(id, v);
      this.version++;
    }
    return v;
  }

  /** Merge a REST vehicle item (GET /api/vehicles): link, CAN, backlog, open alerts. */
  merge(item, nowMs) {
    const v = this.ensure(item.id);
    v.detail = item;
    v.connected = item.link ? !!item.link.connected : null;
    v.openAlerts = item.open_alerts ?? 0;
    const p = item.position;
    if (p && p.lon != null) {
      const t = p.time_ms ?? Date.parse(p.time);
      if (v.timeMs == null || t > v.timeMs) {
        this.pushFix(item.id, t, p.lon, p.lat, p.speed_kmh, p.course_deg ?? p.course);
        this.apply(nowMs);
      }
    }
    this.version++;
  }

  /** Where a vehicle is drawn at `nowMs`, and whether it is still gliding there. */
  shown(v, nowMs) {
    if (!v.from || v.glideMs <= 0) return { lon: v.lon, lat: v.lat, course: v.course, gliding: false };
    const f = Math.min(1, Math.max(0, (nowMs - v.fromMs) / v.glideMs));
    return {
      lon: v.from.lon + (v.lon - v.from.lon) * f,
      lat: v.from.lat + (v.lat - v.from.lat) * f,
      course: lerpAngle(v.from.course, v.course, f),
      gliding: f < 1,
    };
  }

  counts(nowMs) {
    const c = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const v of this.vehicles.values()) c[classify(v, nowMs)]++;
    return c;
  }
}
