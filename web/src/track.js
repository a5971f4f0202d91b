// A recorded route for playback and export (pure): positions by device time, interpolated
// between fixes, so playback at any speed honours the real gaps between them.

export class Track {
  /** From the route API's Feature: coordinates + properties.times_ms / speeds_kmh. */
  constructor(feature) {
    this.coords = feature.geometry.coordinates;
    this.times = feature.properties.times_ms;
    this.speeds = feature.properties.speeds_kmh || [];
    this.vehicle = feature.properties.vehicle;
  }

  get length() {
    return this.times.length;
  }

  get start() {
    return this.times[0];
  }

  get end() {
    return this.times[this.times.length - 1];
  }

  /** Index of the last fix at or before t (0 before the start). */
  indexAt(t) {
    let lo = 0;
    let hi = this.times.length - 1;
    if (t >= this.times[hi]) return hi;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.times[mid] <= t) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** {lon, lat, speed, course, index} at device time t. */
  at(t) {
    const i = this.indexAt(t);
    const j = Math.min(i + 1, this.length - 1);
    const [lon1, lat1] = this.coords[i];
    const [lon2, lat2] = this.coords[j];
    const span = this.times[j] - this.times[i];
    const f = span > 0 ? Math.min(1, Math.max(0, (t - this.times[i]) / span)) : 0;
    return {
      lon: lon1 + (lon2 - lon1) * f,
      lat: lat1 + (lat2 - lat1) * f,
      speed: this.speeds[i],
      course: bearing(lat1, lon1, lat2, lon2),
      index: i,
    };
  }

  /** Two-point LineStrings with the speed of their start, for a speed-coloured line. */
  segments() {
    const features = [];
    for (let i = 0; i + 1 < this.length; i++) {
      features.push({ type: "Feature", properties: { speed: this.speeds[i] ?? 0 },
        geometry: { type: "LineString", coordinates: [this.coords[i], this.coords[i + 1]] } });
    }
    return { type: "FeatureCollection", features };
  }

  toCsv() {
    const lines = ["time_utc,time_ms,lat,lon,speed_kmh"];
    for (let i = 0; i < this.length; i++) {
      const [lon, lat] = this.coords[i];
      lines.push(`${new Date(this.times[i]).toISOString()},${this.times[i]},${lat},${lon},${this.speeds[i] ?? ""}`);
    }
    return `${lines.join("\n")}\n`;
  }

  toGpx() {
    const esc = (s) => String(s).replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const pts = [];
    for (let i = 0; i < this.length; i++) {
      const [lon, lat] = this.coords[i];
      const speed = this.speeds[i] == null ? "" : `<extensions><speed>${(this.speeds[i] / 3.6).toFixed(2)}</speed></extensions>`;
      pts.push(`<trkpt lat="${lat}" lon="${lon}"><time>${new Date(this.times[i]).toISOString()}</time>${speed}</trkpt>`);
    }
    return `<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="fleet-agent" xmlns="http://www.topografix.com/GPX/1/1">\n<trk><name>${esc(this.vehicle)}</name><trkseg>\n${pts.join("\n")}\n</trkseg></trk>\n</gpx>\n`;
  }
}

function bearing(lat1, lon1, lat2, lon2) {
  const r = Math.PI / 180;
  const y = Math.sin((lon2 - lon1) * r) * Math.cos(lat2 * r);
  const x = Math.cos(lat1 * r) * Math.sin(lat2 * r) - Math.sin(lat1 * r) * Math.cos(lat2 * r) * Math.cos((lon2 - lon1) * r);
  return ((Math.atan2(y, x) / r) + 360) % 360;
}

/** Playback clock (pure): device time advances `rate` × wall time while playing. */
export class Playback {
  constructor(start, end) {
    this.start = start;
    this.end = end;
    this.t = start;
    this.rate = 1;
    this.playing = false;
    this.lastWall = null;
  }

  play(wallMs) {
    if (this.t >= this.end) this.t = this.start;
    this.playing = true;
    this.lastWall = wallMs;
  }

  pause() {
    this.playing = false;
  }

  seek(t) {
    this.t = Math.min(this.end, Math.max(this.start, t));
  }

  /** Advance to wall time `wallMs`; returns the device time to show. */
  tick(wallMs) {
    if (this.playing && this.lastWall != null) {
      this.t = Math.min(this.end, this.t + (wallMs - this.lastWall) * this.rate);
      if (this.t >= this.end) this.playing = false;
    }
    this.lastWall = wallMs;
    return this.t;
  }
}
