// The offline basemap: Natural Earth land and borders (built into /app/*.geojson from the
// world-atlas package) and the deployment's road overlay (GET /api/map/config → overlay URL).
// A style URL, or a local PMTiles file, from the backend config replaces it for street maps.
import { PMTiles, Protocol } from "pmtiles";
import * as maplibregl from "maplibre-gl";

export const COLORS = {
  water: "#b9d3e6",
  land: "#eef0e8",
  border: "#9a9aa8",
  road: "#ffffff",
  roadCasing: "#c4c0b4",
  park: "#d3e6c4",
  building: "#d9d4cc",
  path: "#a89f91",
};

// Overlay features carry `kind` (backend/dispatch/streetmap.py: road, path, water, park,
// building); an overlay without it (the demo's route lines) is drawn as roads.
const KIND = ["coalesce", ["get", "kind"], "road"];
// Major classes drawn wider than residential and service streets.
const MAJOR = ["motorway", "trunk", "primary", "secondary", "motorway_link", "trunk_link",
  "primary_link", "secondary_link"];
const IS_MAJOR = ["in", ["coalesce", ["get", "class"], ""], ["literal", MAJOR]];

// Zooms from which street names are drawn: major streets first, the rest once a block shows.
const NAMES_FROM_ZOOM = { major: 14, minor: 16 };

function roadWidth(minor, major) {
  return ["interpolate", ["linear"], ["zoom"],
    10, ["case", IS_MAJOR, major[0], minor[0]],
    16, ["case", IS_MAJOR, major[1], minor[1]]];
}

function offlineStyle(base) {
  return {
    version: 8,
    sources: {
      land: { type: "geojson", data: `${base}land.geojson` },
      borders: { type: "geojson", data: `${base}borders.geojson` },
    },
    layers: [
      { id: "water", type: "background", paint: { "background-color": COLORS.water } },
      { id: "land", type: "fill", source: "land", paint: { "fill-color": COLORS.land } },
      { id: "borders", type: "line", source: "borders",
        paint: { "line-color": COLORS.border, "line-width": 1, "line-dasharray": [3, 2] } },
    ],
  };
}

/** The overlay: water, parks and buildings as fills, paths thin, roads as streets (casing +
 * white fill, wider for major classes). */
export function addOverlay(map, url) {
  if (!url) return;
  map.addSource("overlay", { type: "geojson", data: url });
  for (const kind of ["water", "park", "building"]) {
    map.addLayer({ id: `overlay-${kind}`, type: "fill", source: "overlay",
      filter: ["==", KIND, kind], paint: { "fill-color": COLORS[kind] } });
  }
  map.addLayer({ id: "overlay-path", type: "line", source: "overlay",
    filter: ["==", KIND, "path"],
    paint: { "line-color": COLORS.path, "line-width": 1, "line-dasharray": [2, 2] } });
  map.addLayer({ id: "overlay-casing", type: "line", source: "overlay",
    filter: ["==", KIND, "road"],
    layout: { "line-join": "round", "line-cap": "round" },
    paint: { "line-color": COLORS.roadCasing, "line-width": roadWidth([2, 8], [3, 11]) } });
  map.addLayer({ id: "overlay-road", type: "line", source: "overlay",
    filter: ["==", KIND, "road"],
    layout: { "line-join": "round", "line-cap": "round" },
    paint: { "line-color": COLORS.road, "line-width": roadWidth([1, 6], [2, 9]) } });
  // Street names along their streets, where a map reader expects them: major streets from
  // zoom 14, the others from 16 (drawn as images, icons.js: the offline map has no glyphs).
  for (const [rank, isMajor] of [["major", IS_MAJOR], ["minor", ["!", IS_MAJOR]]]) {
    map.addLayer({ id: `overlay-street-name-${rank}`, type: "symbol", source: "overlay",
      minzoom: NAMES_FROM_ZOOM[rank],
      filter: ["all", ["==", KIND, "road"], ["has", "name"], isMajor],
      layout: { "symbol-placement": "line", "symbol-spacing": 320,
        "icon-image": ["concat", "street:", ["get", "name"]],
        "icon-rotation-alignment": "map", "icon-keep-upright": true, "icon-padding": 4 } });
  }
}

/** A style for a PMTiles archive: raster tiles as one layer, vector tiles drawn generically. */
async function pmtilesStyle(base, url) {
  const archive = new PMTiles(url);
  const header = await archive.getHeader();
  const style = offlineStyle(base);
  const src = `pmtiles://${url}`;
  const RASTER = new Set([2, 3, 4, 5]); // png, jpeg, webp, avif (PMTiles v3 TileType)
  if (RASTER.has(header.tileType)) {
    style.sources.tiles = { type: "raster", url: src, tileSize: 256 };
    style.layers.push({ id: "tiles", type: "raster", source: "tiles" });
    return style;
  }
  const meta = await archive.getMetadata();
  style.sources.tiles = { type: "vector", url: src };
  for (const layer of meta?.vector_layers ?? []) {
    style.layers.push({ id: `t-${layer.id}-fill`, type: "fill", source: "tiles", "source-layer": layer.id,
      filter: ["==", ["geometry-type"], "Polygon"], paint: { "fill-color": "#e4e2da", "fill-opacity": 0.6 } });
    style.layers.push({ id: `t-${layer.id}-line`, type: "line", source: "tiles", "source-layer": layer.id,
      filter: ["==", ["geometry-type"], "LineString"], paint: { "line-color": "#ffffff", "line-width": 1.5 } });
  }
  return style;
}

/** The style to start with, from the backend's map config. */
export async function initialStyle(base, config) {
  const protocol = new Protocol();
  maplibregl.addProtocol("pmtiles", protocol.tile);
  if (config.style_url) return config.style_url;
  if (config.pmtiles_url) {
    try {
      return await pmtilesStyle(base, new URL(config.pmtiles_url, location.href).href);
    } catch (err) {
      console.warn("PMTiles basemap unavailable, using the offline one:", err.message);
    }
  }
  return offlineStyle(base);
}
