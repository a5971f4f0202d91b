// Vehicle layers on the map (WebGL: one clustered GeoJSON source, circle + symbol layers).
//
// The frame loop applies the hub's coalesced positions once per animation frame and re-sends
// the source at most once per frame; when building it costs more than a slice of the frame
// (thousands of vehicles), updates are spaced out so the map stays responsive.
import { classify } from "./fleet.js";
import { arrowImage, resolveImage } from "./icons.js";

export const STATE_COLORS = {
  moving: "#1f9d55",
  parked: "#2b6cb0",
  stale: "#d69e2e",
  offline: "#718096",
  alert: "#e53e3e",
};
// Share of a 16.7 ms frame the source rebuild may take on average before updates are spaced.
const FRAME_BUDGET_MS = 4;
// Clusters above this zoom dissolve into single vehicles (a city district at zoom 12).
const CLUSTER_MAX_ZOOM = 11;
const CLUSTER_RADIUS_PX = 45;
// Zoomed out, clusters show counts, not motion: rebuild the source at most this often and do
// not animate (bench/bench_webapp.py: 10,000 animated vehicles re-clustered every frame took
// ~1 s a frame on SwiftShader, 3x the empty map's redraw).
const CLUSTERED_UPDATE_MS = 1000;
// Zoomed in, only vehicles within the view (grown by this share of its size on every side)
// go into the source: a city view holds hundreds of a 10,000-vehicle fleet, not all of them.
const VIEW_MARGIN = 0.5;

const stateColor = ["match", ["get", "state"],
  ...Object.entries(STATE_COLORS).flat(), "#555"];

export class LiveLayer {
  constructor(map, fleet, { onSelect }) {
    this.map = map;
    this.fleet = fleet;
    this.selected = null;
    this.following = null;
    this.hidden = new Set(); // ids filtered out by the list's state filter
    this.lastBuildMs = 0;
    this.nextAt = 0;
    this.frames = 0; // source updates sent (read by tests and the benchmark)
    this.dirty = true;
    map.addImage("arrow", arrowImage().data, arrowImage().options);
    map.setMissingStyleImageResolver((id) => resolveImage(map, id));
    map.addSource("vehicles", {
      type: "geojson",
      data: { type: "FeatureCollection", features: [] },
      cluster: true,
      clusterMaxZoom: CLUSTER_MAX_ZOOM,
      clusterRadius: CLUSTER_RADIUS_PX,
      clusterProperties: { alerts: ["+", ["case", ["==", ["get", "state"], "alert"], 1, 0]] },
    });
    map.addSource("selected", { type: "geojson", data: empty() });
    const clustered = ["has", "point_count"];
    const single = ["!", clustered];
    map.addLayer({ id: "clusters", type: "circle", source: "vehicles", filter: clustered,
      paint: { "circle-color": ["case", [">", ["get", "alerts"], 0], STATE_COLORS.alert, "#3a4a63"],
               "circle-radius": ["interpolate", ["linear"], ["get", "point_count"], 2, 14, 100, 20, 5000, 32],
               "circle-stroke-color": "#fff", "circle-stroke-width": 2, "circle-opacity": 0.9 } });
    map.addLayer({ id: "cluster-count", type: "symbol", source: "vehicles", filter: clustered,
      layout: { "icon-image": ["concat", "count:", ["get", "point_count_abbreviated"]],
                "icon-allow-overlap": true } });
    map.addLayer({ id: "selected-halo", type: "circle", source: "selected",
      paint: { "circle-radius": 16, "circle-color": "rgba(255,200,0,0.35)",
               "circle-stroke-color": "#d69e2e", "circle-stroke-width": 2 } });
    map.addLayer({ id: "vehicle-dot", type: "circle", source: "vehicles",
      filter: ["all", single, ["!=", ["get", "state"], "moving"]],
      paint: { "circle-color": stateColor, "circle-radius": 7,
               "circle-stroke-color": ["case", [">", ["get", "alerts"], 0], "#e53e3e", "#fff"],
               "circle-stroke-width": ["case", [">", ["get", "alerts"], 0], 3, 2] } });
    map.addLayer({ id: "vehicle-arrow", type: "symbol", source: "vehicles",
      filter: ["all", single, ["==", ["get", "state"], "moving"]],
      layout: { "icon-image": "arrow", "icon-rotate": ["get", "course"],
                "icon-rotation-alignment": "map", "icon-allow-overlap": true,
                "icon-ignore-placement": true, "icon-size": 0.9 },
      paint: { "icon-color": stateColor, "icon-halo-color": "#fff", "icon-halo-width": 2 } });
    map.addLayer({ id: "vehicle-label", type: "symbol", source: "vehicles", filter: single,
      layout: { "icon-image": ["concat", "label:", ["get", "id"]], "icon-anchor": "top",
                "icon-offset": [0, 12], "icon-optional": true } });
    for (const layer of ["vehicle-dot", "vehicle-arrow", "vehicle-label"]) {
      map.on("click", layer, (e) => onSelect(e.features[0].properties.id));
      map.on("mouseenter", layer, () => { map.getCanvas().style.cursor = "pointer"; });
      map.on("mouseleave", layer, () => { map.getCanvas().style.cursor = ""; });
    }
    // the view moved: vehicles that came into it (or clusters that dissolved) are drawn
    map.on("moveend", () => { this.dirty = true; this.nextAt = 0; });
    map.on("click", "clusters", async (e) => {
      const f = e.features[0];
      const zoom = await map.getSource("vehicles").getClusterExpansionZoom(f.properties.cluster_id);
      map.easeTo({ center: f.geometry.coordinates, zoom });
    });
  }

  /** One animation frame: called by the app's requestAnimationFrame loop. */
  frame(now) {
    const moved = this.fleet.apply(now) > 0;
    if (moved) this.dirty = true;
    const clustered = this.map.getZoom() <= CLUSTER_MAX_ZOOM;
    const animating = !clustered && this.fleet.animating(now);
    // back-pressure: a new update only once the map has finished tiling the previous one
    // (MapLibre re-tiles the whole source in its worker on every setData)
    const ready = this.map.isSourceLoaded("vehicles");
    if ((this.dirty || animating) && ready && performance.now() >= this.nextAt) {
      const t0 = performance.now();
      this.map.getSource("vehicles").setData(this.collection(now));
      this.lastBuildMs = performance.now() - t0;
      // spend at most FRAME_BUDGET_MS per frame on average on rebuilding the source
      this.nextAt = t0 + Math.max(clustered ? CLUSTERED_UPDATE_MS : 0,
                                  (this.lastBuildMs / FRAME_BUDGET_MS) * 16.7 - 16.7);
      this.frames++;
      this.dirty = false;
    }
    const sel = this.selected && this.fleet.vehicles.get(this.selected);
    if (sel && sel.lon != null) {
      const p = this.fleet.shown(sel, now);
      this.map.getSource("selected").setData({ type: "Feature", properties: {},
        geometry: { type: "Point", coordinates: [p.lon, p.lat] } });
      if (this.following === sel.id) this.map.jumpTo({ center: [p.lon, p.lat] });
    }
  }

  /** The source's features: every vehicle when clustered, else those in or near the view. */
  collection(now) {
    const features = [];
    const view = this.map.getZoom() <= CLUSTER_MAX_ZOOM ? null : this.map.getBounds();
    let w, e, sth, nth;
    if (view) {
      const dx = (view.getEast() - view.getWest()) * VIEW_MARGIN;
      const dy = (view.getNorth() - view.getSouth()) * VIEW_MARGIN;
      [w, e, sth, nth] = [view.getWest() - dx, view.getEast() + dx, view.getSouth() - dy, view.getNorth() + dy];
    }
    for (const v of this.fleet.vehicles.values()) {
      if (v.lon == null || this.hidden.has(v.id)) continue;
      if (view && v.id !== this.selected && (v.lon < w || v.lon > e || v.lat < sth || v.lat > nth)) continue;
      const p = this.fleet.shown(v, now);
      features.push({ type: "Feature",
        geometry: { type: "Point", coordinates: [p.lon, p.lat] },
        properties: { id: v.id, state: classify(v, now), course: p.course, alerts: v.openAlerts } });
    }
    return { type: "FeatureCollection", features };
  }

  select(id, { reveal = false } = {}) {
    this.selected = id;
    const v = id && this.fleet.vehicles.get(id);
    if (reveal && v && v.lon != null) {
      const inView = this.map.getBounds().contains([v.lon, v.lat]);
      if (!inView || this.map.getZoom() <= CLUSTER_MAX_ZOOM) {
        this.map.easeTo({ center: [v.lon, v.lat], zoom: Math.max(this.map.getZoom(), CLUSTER_MAX_ZOOM + 2) });
      }
    }
    if (!id) this.map.getSource("selected").setData(empty());
    this.dirty = true;
  }

  follow(id) {
    this.following = id;
    const v = id && this.fleet.vehicles.get(id);
    if (v && v.lon != null) this.map.easeTo({ center: [v.lon, v.lat], zoom: Math.max(this.map.getZoom(), 14) });
  }

  fitAll() {
    const pts = [...this.fleet.vehicles.values()].filter((v) => v.lon != null);
    if (!pts.length) return;
    const lons = pts.map((v) => v.lon);
    const lats = pts.map((v) => v.lat);
    this.following = null;
    this.map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]],
      { padding: 60, maxZoom: 15, duration: 600 });
  }
}

export function empty() {
  return { type: "FeatureCollection", features: [] };
}
