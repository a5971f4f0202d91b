// Bundles the dispatcher app into ../backend/static/app/ (served by the backend, shipped in
// the .deb). Everything the browser loads comes from here: no CDN, nothing fetched at run time.
import { build } from "esbuild";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { feature, mesh } from "topojson-client";

const OUT = new URL("../backend/static/app/", import.meta.url);
const nm = (p) => new URL(`node_modules/${p}`, import.meta.url);
// PROFILE=1: readable names in CPU profiles (bench/bench_browser.py --profile), MapLibre's dev build
const PROFILE = process.env.PROFILE === "1";
const dev = PROFILE ? "-dev" : "";

await rm(OUT, { recursive: true, force: true });
await mkdir(OUT, { recursive: true });
await build({
  entryPoints: { app: "src/main.js", login: "src/login.js", password: "src/password.js",
    "live-worker": "src/live-worker.js", driver: "src/driver.js", "driver-sw": "src/driver-sw.js",
    "cab-pair": "src/cab-pair.js" },
  bundle: true,
  format: "esm",
  minify: !PROFILE,
  sourcemap: false,
  target: ["chrome110", "firefox115", "safari16"],
  outdir: OUT.pathname,
  logLevel: "warning",
  alias: PROFILE ? { "maplibre-gl": nm("maplibre-gl/dist/maplibre-gl-dev.mjs").pathname } : {},
});
// MapLibre runs its tile/GeoJSON work in a module worker loaded next to the bundle
await copyFile(nm(`maplibre-gl/dist/maplibre-gl-worker${dev}.mjs`), new URL("maplibre-gl-worker.mjs", OUT));
await copyFile(nm("maplibre-gl/dist/maplibre-gl.css"), new URL("maplibre-gl.css", OUT));
await copyFile(nm("uplot/dist/uPlot.min.css"), new URL("uplot.css", OUT));
for (const f of ["index.html", "login.html", "password.html", "app.css", "driver.html", "driver.css",
  "driver.webmanifest", "driver-icon.svg", "cab-pair.html"]) {
  await copyFile(new URL(`src/${f}`, import.meta.url), new URL(f, OUT));
}
// Natural Earth (public domain) land and borders, converted once here to GeoJSON assets
const topo = JSON.parse(await readFile(nm("world-atlas/countries-50m.json"), "utf8"));
// land as one polygon per country: the single merged land polygon's rings span the whole world
// and tile clipping then fills open sea in places
await writeFile(new URL("land.geojson", OUT), JSON.stringify(feature(topo, topo.objects.countries)));
await writeFile(new URL("borders.geojson", OUT),
  JSON.stringify(mesh(topo, topo.objects.countries, (a, b) => a !== b)));
// The customer's tracking page (backend/api/links.py): its own small bundle and directory, so
// nothing of the dispatcher app (code, styles, map data) is ever sent to a customer.
const TRACK = new URL("../backend/static/track/", import.meta.url);
await rm(TRACK, { recursive: true, force: true });
await mkdir(TRACK, { recursive: true });
await build({
  entryPoints: { track: "src/track/track.js" },
  bundle: true, format: "esm", minify: !PROFILE, sourcemap: false,
  target: ["chrome110", "firefox115", "safari16"], outdir: TRACK.pathname, logLevel: "warning",
});
for (const f of ["index.html", "track.css"]) {
  await copyFile(new URL(`src/track/${f}`, import.meta.url), new URL(f, TRACK));
}
// The driver app again for the in-cab tablet, served by the vehicle's agent (agent/cab/): the
// same files, in the agent's package (its package ships no backend/static).
const CAB = new URL("../agent/cab_static/", import.meta.url);
await rm(CAB, { recursive: true, force: true });
await mkdir(CAB, { recursive: true });
for (const f of ["driver.html", "driver.js", "driver.css", "driver-sw.js", "driver.webmanifest",
  "driver-icon.svg", "cab-pair.html", "cab-pair.js"]) {
  await copyFile(new URL(f, OUT), new URL(f, CAB));
}
