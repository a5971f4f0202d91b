// What the clustered source needs to hear about a fleet (pure: no map, time is an argument).
//
// Zoomed out, a vehicle is one point among thousands grouped into clusters: a move of a few
// pixels changes nothing a dispatcher can see. `ClusterDiff` remembers what the map's
// clustered source holds and returns a MapLibre `GeoJSONSourceDiff` (updateData) with only the
// vehicles that moved more than a tolerance, turned, changed state or alerts, appeared, or
// were filtered in or out. bench/bench_browser.py: re-sending all 10,000 features once a second
// (setData) cost ~200 ms of main thread per send in MapLibre's serialisation for the worker.
import { classify } from "./fleet.js";

// MapLibre's world is 512 px wide at zoom 0.
const WORLD_PX = 512;
// A single vehicle at cluster zooms may be drawn this far from its latest position: less than
// its dot's 7 px radius, a small fraction of the 45 px cluster radius.
export const TOLERANCE_PX = 3;
// Its heading arrow may lag this much behind its latest course.
export const COURSE_DEG = 20;

function turned(a, b) {
  const d = Math.abs(((b - a + 540) % 360) - 180);
  return d > COURSE_DEG;
}

export class ClusterDiff {
  constructor() {
    this.sent = new Map(); // id → { lon, lat, course, state, alerts } as the source holds it
  }

  /** Degrees of longitude per TOLERANCE_PX at `zoom`: a vehicle moving less is not re-sent. */
  static toleranceDeg(zoom) {
    return (TOLERANCE_PX * 360) / (WORLD_PX * 2 ** zoom);
  }

  /**
   * The diff that brings the source up to date with `vehicles` (Fleet.vehicles) at `nowMs`,
   * or null when there is nothing to send. Vehicles in `hidden` (ids) are left out.
   */
  diff(vehicles, nowMs, { zoom, hidden = new Set() }) {
    const tol = ClusterDiff.toleranceDeg(zoom);
    const add = [];
    const update = [];
    const remove = [];
    for (const v of vehicles.values()) {
      const was = this.sent.get(v.id);
      if (v.lon == null || hidden.has(v.id)) {
        if (was) {
          remove.push(v.id);
          this.sent.delete(v.id);
        }
        continue;
      }
      const now = { lon: v.lon, lat: v.lat, course: v.course ?? 0, state: classify(v, nowMs),
                    alerts: v.openAlerts ?? 0 };
      if (!was) {
        add.push(feature(v.id, now));
        this.sent.set(v.id, now);
        continue;
      }
      const moved = Math.abs(now.lon - was.lon) > tol || Math.abs(now.lat - was.lat) > tol;
      const props = now.state !== was.state || now.alerts !== was.alerts || turned(was.course, now.course);
      if (!moved && !props) continue;
      const u = { id: v.id };
      if (moved) u.newGeometry = point(now);
      else [now.lon, now.lat] = [was.lon, was.lat]; // what the source still draws
      if (props) u.addOrUpdateProperties = [{ key: "state", value: now.state },
        { key: "alerts", value: now.alerts }, { key: "course", value: now.course }];
      else now.course = was.course;
      update.push(u);
      this.sent.set(v.id, now);
    }
    for (const id of this.sent.keys()) {
      if (!vehicles.has(id)) {
        remove.push(id);
        this.sent.delete(id);
      }
    }
    if (!add.length && !update.length && !remove.length) return null;
    const d = {};
    if (remove.length) d.remove = remove;
    if (add.length) d.add = add;
    if (update.length) d.update = update;
    return d;
  }
}

function point(p) {
  return { type: "Point", coordinates: [p.lon, p.lat] };
}

function feature(id, p) {
  return { type: "Feature", geometry: point(p),
           properties: { id, state: p.state, course: p.course, alerts: p.alerts } };
}
