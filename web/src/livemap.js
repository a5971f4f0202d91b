// Vehicle layers on the map (WebGL: GeoJSON sources, circle + symbol layers), in two sources:
// - "clusters" (zoom < LIVE_MIN_ZOOM): every vehicle, clustered; it is told only what changed
//   enough to see (ClusterDiff, MapLibre's updateData) at most once per CLUSTERED_UPDATE_MS,
//   and not animated (clusters show counts, not motion);
// - "vehicles" (zoom >= LIVE_MIN_ZOOM): only the vehicles in or near the view, re-sent while
//   one of them glides, in steps of GLIDE_STEP_PX on screen, so markers move smoothly.
// The frame loop applies the hub's coalesced positions once per animation frame.
import { ClusterDiff } from "./clusterdiff.js";
import { classify, glidePx } from "./fleet.js";
import { arrowImage, resolveImage } from "./icons.js";

export const STATE_COLORS = {
  moving: "#1f9d55",
  parked: "#2b6cb0",
  stale: "#d69e2e",
  offline: "#718096",
  alert: "#e53e3e",
};
// Clusters above this zoom dissolve into single vehicles (a city district at zoom 12).
const CLUSTER_MAX_ZOOM = 11;
export const LIVE_MIN_ZOOM = CLUSTER_MAX_ZOOM + 1;
const CLUSTER_RADIUS_PX = 45;
// Zoomed out, the clustered source is told of changes at most this often: MapLibre's worker
// re-clusters every vehicle on each update, however small (bench/bench_browser.py).
const CLUSTERED_UPDATE_MS = 1000;
// Zoomed in, only vehicles within the view (grown by this share of its size on every side) go
// into the source: a city view holds hundreds of a 10,000-vehicle fleet. The source is rebuilt
// for the view of the moment at every glide step and at the end of every move, so the margin
// only has to cover a view moved in between (0.5, 4x the view's area, cost 2-3x the features).
const VIEW_MARGIN = 0.15;
// A gliding marker is redrawn once the fastest one has moved this far on screen: steps of half
// a pixel look continuous, and at a city zoom a car at 50 km/h moves ~2.5 px a second, so the
// source is re-sent a few times a second instead of every frame.
const GLIDE_STEP_PX = 0.5;
// New positions are drawn within this even when nothing on screen glides fast.
const MAX_STEP_MS = 1000;
// The arrow's tip is this far from its centre (icons.js): a turn of a degree moves it ~0.2 px.
const ARROW_TIP_PX = 12;

const stateColor = ["match", ["get", "state"],
  ...Object.entries(STATE_COLORS).flat(), "#555"];
const alertStroke = {
  "circle-stroke-color": ["case", [">", ["get", "alerts"], 0], "#e53e3e", "#fff"],
  "circle-stroke-width": ["case", [">", ["get", "alerts"], 0], 3, 2],
};
const arrowLayout = { "icon-image": "arrow", "icon-rotate": ["get", "course"],
  "icon-rotation-alignment": "map", "icon-allow-overlap": true,
  "icon-ignore-placement": true, "icon-size": 0.9 };
const arrowPaint = { "icon-color": stateColor, "icon-halo-color": "#fff", "icon-halo-width": 2 };
const moving = ["==", ["get", "state"], "moving"];

export class LiveLayer {
  constructor(map, fleet, { onSelect }) {
    this.map = map;
    this.fleet = fleet;
    this.selected = null;
    this.following = null;
    this.hidden = new Set(); // ids filtered out by the list's state filter
    this.frames = 0; // source updates sent (read by tests and the benchmark)
    this.dirty = true;
    this.liveGliding = false; // a vehicle in the live source is still gliding
    this.liveAt = 0; // when the live source is next re-sent (GLIDE_STEP_PX)
    this.clusterDiff = new ClusterDiff();
    this.clusterAt = 0;
    map.addImage("arrow", arrowImage().data, arrowImage().options);
    map.setMissingStyleImageResolver((id) => resolveImage(map, id));
    map.addSource("clusters", {
      type: "geojson",
      data: empty(),
      promoteId: "id", // updateData addresses features by vehicle id
      cluster: true,
      clusterMaxZoom: CLUSTER_MAX_ZOOM,
      clusterRadius: CLUSTER_RADIUS_PX,
      clusterProperties: { alerts: ["+", ["case", ["==", ["get", "state"], "alert"], 1, 0]] },
    });
    map.addSource("vehicles", { type: "geojson", data: empty() });
    map.addSource("selected", { type: "geojson", data: empty() });
    const clustered = ["has", "point_count"];
    const single = ["!", clustered];
    const zoomedOut = { source: "clusters", maxzoom: LIVE_MIN_ZOOM };
    const zoomedIn = { source: "vehicles", minzoom: LIVE_MIN_ZOOM };
    map.addLayer({ id: "clusters", type: "circle", ...zoomedOut, filter: clustered,
      paint: { "circle-color": ["case", [">", ["get", "alerts"], 0], STATE_COLORS.alert, "#3a4a63"],
               "circle-radius": ["interpolate", ["linear"], ["get", "point_count"], 2, 14, 100, 20, 5000, 32],
               "circle-stroke-color": "#fff", "circle-stroke-width": 2, "circle-opacity": 0.9 } });
    map.addLayer({ id: "cluster-count", type: "symbol", ...zoomedOut, filter: clustered,
      layout: { "icon-image": ["concat", "count:", ["get", "point_count_abbreviated"]],
                "icon-allow-overlap": true } });
    map.addLayer({ id: "cluster-dot", type: "circle", ...zoomedOut, filter: ["all", single, ["!", moving]],
      paint: { "circle-color": stateColor, "circle-radius": 6, ...alertStroke } });
    map.addLayer({ id: "cluster-arrow", type: "symbol", ...zoomedOut, filter: ["all", single, moving],
      layout: { ...arrowLayout, "icon-size": 0.75 }, paint: arrowPaint });
    map.addLayer({ id: "selected-halo", type: "circle", source: "selected",
      paint: { "circle-radius": 16, "circle-color": "rgba(255,200,0,0.35)",
               "circle-stroke-color": "#d69e2e", "circle-stroke-width": 2 } });
    map.addLayer({ id: "vehicle-dot", type: "circle", ...zoomedIn, filter: ["!", moving],
      paint: { "circle-color": stateColor, "circle-radius": 7, ...alertStroke } });
    map.addLayer({ id: "vehicle-arrow", type: "symbol", ...zoomedIn, filter: moving,
      layout: arrowLayout, paint: arrowPaint });
    map.addLayer({ id: "vehicle-label", type: "symbol", ...zoomedIn,
      layout: { "icon-image": ["concat", "label:", ["get", "id"]], "icon-anchor": "top",
                "icon-offset": [0, 12], "icon-optional": true } });
    for (const layer of ["vehicle-dot", "vehicle-arrow", "vehicle-label", "cluster-dot", "cluster-arrow"]) {
      map.on("click", layer, (e) => onSelect(e.features[0].properties.id));
      map.on("mouseenter", layer, () => { map.getCanvas().style.cursor = "pointer"; });
      map.on("mouseleave", layer, () => { map.getCanvas().style.cursor = ""; });
    }
    // the view moved: vehicles that came into it are drawn (the clustered source holds all)
    map.on("moveend", () => {
      this.dirty = true;
      if (!this.following) this.liveAt = 0; // following moves the view every frame: keep the steps
    });
    map.on("click", "clusters", async (e) => {
      const f = e.features[0];
      const zoom = await map.getSource("clusters").getClusterExpansionZoom(f.properties.cluster_id);
      map.easeTo({ center: f.geometry.coordinates, zoom });
    });
  }

  /** Set the ids the list's state filter hides; the sources follow at their next update. */
  setHidden(hidden) {
    this.hidden = hidden;
    this.dirty = true;
    this.clusterAt = 0;
    this.liveAt = 0;
  }

  /** One animation frame: called by the app's requestAnimationFrame loop. */
  frame(now) {
    if (this.fleet.apply(now) > 0) this.dirty = true;
    if (this.map.getZoom() < LIVE_MIN_ZOOM) {
      if (now >= this.clusterAt) this.updateClusters(now);
    } else if ((this.dirty || this.liveGliding) && now >= this.liveAt
               && this.map.isSourceLoaded("vehicles")) {
      // back-pressure: a new update only once the map has finished tiling the previous one
      const pxPerMs = { max: 0 };
      this.map.getSource("vehicles").setData(this.collection(now, pxPerMs));
      this.liveAt = now + Math.min(MAX_STEP_MS, GLIDE_STEP_PX / pxPerMs.max);
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

  /** Tell the clustered source what changed enough to see, if anything. */
  updateClusters(now) {
    this.clusterAt = now + CLUSTERED_UPDATE_MS;
    const d = this.clusterDiff.diff(this.fleet.vehicles, now, { zoom: this.map.getZoom(), hidden: this.hidden });
    if (!d) return;
    this.map.getSource("clusters").updateData(d);
    this.frames++;
  }

  /** The live source's features: the vehicles in or near the view, and the selected one;
   * `pxPerMs.max` gets the screen speed of the fastest gliding one. */
  collection(now, pxPerMs = { max: 0 }) {
    const pxPerDeg = (512 * 2 ** this.map.getZoom()) / 360;
    const features = [];
    const view = this.map.getBounds();
    const dx = (view.getEast() - view.getWest()) * VIEW_MARGIN;
    const dy = (view.getNorth() - view.getSouth()) * VIEW_MARGIN;
    const [w, e, sth, nth] = [view.getWest() - dx, view.getEast() + dx, view.getSouth() - dy, view.getNorth() + dy];
    let gliding = false;
    for (const v of this.fleet.vehicles.values()) {
      if (v.lon == null || this.hidden.has(v.id)) continue;
      if (v.id !== this.selected && (v.lon < w || v.lon > e || v.lat < sth || v.lat > nth)) continue;
      const p = this.fleet.shown(v, now);
      if (p.gliding) {
        gliding = true;
        pxPerMs.max = Math.max(pxPerMs.max, glidePx(v, pxPerDeg, ARROW_TIP_PX) / v.glideMs);
      }
      features.push({ type: "Feature",
        geometry: { type: "Point", coordinates: [p.lon, p.lat] },
        properties: { id: v.id, state: classify(v, now), course: p.course, alerts: v.openAlerts } });
    }
    this.liveGliding = gliding;
    return { type: "FeatureCollection", features };
  }

  select(id, { reveal = false } = {}) {
    this.selected = id;
    const v = id && this.fleet.vehicles.get(id);
    if (reveal && v && v.lon != null) {
      const inView = this.map.getBounds().contains([v.lon, v.lat]);
      if (!inView || this.map.getZoom() < LIVE_MIN_ZOOM) {
        this.map.easeTo({ center: [v.lon, v.lat], zoom: Math.max(this.map.getZoom(), LIVE_MIN_ZOOM + 1) });
      }
    }
    if (!id) this.map.getSource("selected").setData(empty());
    this.dirty = true;
    this.liveAt = 0;
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
