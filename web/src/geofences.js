// Geofences: list, draw (polygon or circle, with terra-draw), edit, delete, name and speed
// limit; who is inside now; entries for a period (and their CSV).
import { TerraDraw, TerraDrawCircleMode, TerraDrawPolygonMode, TerraDrawSelectMode } from "terra-draw";
import { TerraDrawMapLibreGLAdapter } from "terra-draw-maplibre-gl-adapter";
import { del, get, post, put, query } from "./api.js";
import { fmtTime, h, localInput, toast } from "./dom.js";

const EARTH_RADIUS_M = 6371008.8;
const DAY_MS = 86400_000;

function uuid() {
  // crypto.randomUUID needs a secure context; a LAN dashboard over plain HTTP is not one
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function distanceM([lon1, lat1], [lon2, lat2]) {
  const r = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * r) / 2) ** 2
    + Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin(((lon2 - lon1) * r) / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

/** Centre and radius of a drawn circle polygon (its vertices are evenly spaced around it). */
export function circleOf(polygon) {
  const ring = polygon.coordinates[0].slice(0, -1);
  const center = [ring.reduce((s, c) => s + c[0], 0) / ring.length, ring.reduce((s, c) => s + c[1], 0) / ring.length];
  const radius = ring.reduce((s, c) => s + distanceM(center, c), 0) / ring.length;
  return { center: center.map((v) => Number(v.toFixed(7))), radius_m: Math.round(radius * 10) / 10 };
}

export class Geofences {
  constructor(root, map, { may }) {
    this.root = root;
    this.map = map;
    this.may = may;
    this.collection = { type: "FeatureCollection", features: [] };
    this.editing = null; // {id|null, drawId, mode}
    map.addSource("geofences", { type: "geojson", data: this.collection, promoteId: "id" });
    map.addLayer({ id: "geofence-fill", type: "fill", source: "geofences",
      paint: { "fill-color": "#805ad5", "fill-opacity": 0.12 } }, "clusters");
    map.addLayer({ id: "geofence-line", type: "line", source: "geofences",
      paint: { "line-color": "#6b46c1", "line-width": 2 } }, "clusters");
    map.addLayer({ id: "geofence-label", type: "symbol", source: "geofences",
      layout: { "icon-image": ["concat", "label:", ["get", "name"]], "icon-optional": true } });
    this.draw = new TerraDraw({
      adapter: new TerraDrawMapLibreGLAdapter({ map }),
      idStrategy: { isValidId: (id) => typeof id === "string" && id.length > 0, getId: uuid },
      modes: [
        new TerraDrawPolygonMode(),
        new TerraDrawCircleMode(),
        new TerraDrawSelectMode({ flags: {
          polygon: { feature: { draggable: true, coordinates: { draggable: true, midpoints: true, deletable: true } } },
          circle: { feature: { draggable: true } },
        } }),
      ],
    });
    this.draw.start();
    this.draw.on("finish", (id, ctx) => {
      if (ctx?.action === "draw" && this.editing) this.editing.drawId = id;
      if (ctx?.action === "draw") this.draw.setMode("select");
      this.renderForm();
    });
    this.list = h("ul", { class: "geofence-list", id: "geofence-list" });
    this.form = h("div", { class: "geofence-form" });
    this.detail = h("div", { class: "geofence-detail", id: "geofence-detail" });
    const tools = this.may("dispatcher") ? h("div", { class: "row2" },
      h("button", { id: "draw-polygon", onclick: () => this.start("polygon") }, "Draw polygon"),
      h("button", { id: "draw-circle", onclick: () => this.start("circle") }, "Draw circle")) : null;
    root.append(tools, this.form, this.list, this.detail);
  }

  async load() {
    try {
      const answer = await get("/api/geofences");
      this.collection = { type: "FeatureCollection", features: answer.features || [] };
    } catch (err) {
      toast(`Geofences: ${err.message}`, "error");
      return;
    }
    this.map.getSource("geofences").setData(this.collection);
    this.renderList();
  }

  renderList() {
    const may = this.may("dispatcher");
    this.list.replaceChildren(...this.collection.features.map((f) => {
      const p = f.properties;
      return h("li", { dataset: { geofence: p.id } },
        h("div", { class: "name" }, p.name || `#${p.id}`,
          h("span", { class: "muted" }, p.circle ? ` · circle ${Math.round(p.circle.radius_m)} m` : " · polygon",
            p.speed_limit_kmh != null ? ` · limit ${p.speed_limit_kmh} km/h` : "")),
        h("div", { class: "row2 small" },
          h("button", { onclick: () => this.fit(f) }, "Show"),
          h("button", { class: "gf-inside", onclick: () => this.inside(f) }, "Inside now"),
          h("button", { class: "gf-entries", onclick: () => this.entriesForm(f) }, "Entries"),
          may ? h("button", { class: "gf-edit", onclick: () => this.edit(f) }, "Edit") : null,
          may ? h("button", { class: "gf-delete danger", onclick: () => this.remove(f) }, "Delete") : null));
    }));
  }

  fit(f) {
    const coords = f.geometry.type === "Polygon" ? f.geometry.coordinates.flat() : f.geometry.coordinates.flat(2);
    const lons = coords.map((c) => c[0]);
    const lats = coords.map((c) => c[1]);
    this.map.fitBounds([[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]], { padding: 80, maxZoom: 17 });
  }

  start(mode) {
    this.cancel();
    this.editing = { id: null, drawId: null, mode, name: "", limit: "" };
    this.draw.setMode(mode);
    this.renderForm();
  }

  edit(f) {
    this.cancel();
    const mode = f.properties.circle ? "circle" : "polygon";
    if (f.geometry.type !== "Polygon") {
      toast("Only single polygons can be edited on the map; rename or delete this one.", "info");
    }
    const drawId = uuid();
    if (f.geometry.type === "Polygon") {
      const errors = this.draw.addFeatures([{ id: drawId, type: "Feature", geometry: f.geometry,
        properties: mode === "circle" ? { mode, radiusKilometers: f.properties.circle.radius_m / 1000 } : { mode } }]);
      if (errors.some((e) => !e.valid)) console.warn("geofence not editable:", errors);
      this.draw.setMode("select");
      this.draw.selectFeature(drawId);
    }
    this.editing = { id: f.properties.id, drawId: f.geometry.type === "Polygon" ? drawId : null, mode,
                     name: f.properties.name || "", limit: f.properties.speed_limit_kmh ?? "", original: f };
    this.fit(f);
    this.renderForm();
  }

  renderForm() {
    const e = this.editing;
    if (!e) {
      this.form.replaceChildren();
      return;
    }
    const drawn = e.drawId || (e.id && !e.drawId);
    const name = h("input", { id: "geofence-name", value: e.name, required: true, maxlength: 80, "aria-label": "Geofence name",
      oninput: (ev) => { e.name = ev.target.value; } });
    const limit = h("input", { id: "geofence-limit", type: "number", min: 1, max: 300, value: e.limit,
      placeholder: "none", "aria-label": "Speed limit km/h", oninput: (ev) => { e.limit = ev.target.value; } });
    this.form.replaceChildren(h("form", { class: "stack", onsubmit: (ev) => { ev.preventDefault(); this.save(); } },
      h("p", { class: "muted" }, drawn
        ? (e.id ? "Drag the shape or its corners, then save." : "Name the geofence and save it.")
        : e.mode === "circle" ? "Click the centre, then click again at the radius." : "Click the corners; click the first one again to close."),
      h("label", {}, "Name ", name),
      h("label", {}, "Speed limit (km/h) ", limit),
      h("div", { class: "row2" },
        h("button", { type: "submit", id: "geofence-save", disabled: !drawn }, "Save"),
        h("button", { type: "button", onclick: () => this.cancel() }, "Cancel"))));
  }

  async save() {
    const e = this.editing;
    if (!e.name.trim()) {
      toast("A geofence needs a name", "error");
      return;
    }
    const drawn = e.drawId ? this.draw.getSnapshotFeature(e.drawId) : null;
    const geometry = drawn ? drawn.geometry : e.original.geometry;
    const properties = { name: e.name.trim(), speed_limit_kmh: e.limit === "" ? null : Number(e.limit) };
    if (e.mode === "circle") properties.circle = drawn ? circleOf(drawn.geometry) : e.original.properties.circle;
    const body = { type: "Feature", geometry, properties };
    try {
      if (e.id) await put(`/api/geofences/${encodeURIComponent(e.id)}`, body);
      else await post("/api/geofences", body);
      toast(`Geofence ${properties.name} saved`);
    } catch (err) {
      toast(`Not saved: ${err.message}`, "error");
      return;
    }
    this.cancel();
    await this.load();
  }

  cancel() {
    this.editing = null;
    this.draw.clear();
    this.draw.setMode("static");
    this.renderForm();
  }

  async remove(f) {
    if (!confirm(`Delete geofence ${f.properties.name}?`)) return;
    try {
      await del(`/api/geofences/${encodeURIComponent(f.properties.id)}`);
    } catch (err) {
      toast(`Not deleted: ${err.message}`, "error");
      return;
    }
    await this.load();
  }

  async inside(f) {
    try {
      const r = await get(`/api/geofences/${encodeURIComponent(f.properties.id)}/inside`);
      const ids = (r.vehicles || []).map((v) => (typeof v === "string" ? v : v.id ?? v.vehicle_id));
      this.detail.replaceChildren(h("h3", {}, `Inside ${f.properties.name} now (${ids.length})`),
        h("p", { id: "geofence-inside" }, ids.length ? ids.join(", ") : "nobody"));
    } catch (err) {
      toast(err.message, "error");
    }
  }

  entriesForm(f) {
    const now = Date.now();
    const from = h("input", { type: "datetime-local", value: localInput(now - DAY_MS), "aria-label": "From" });
    const to = h("input", { type: "datetime-local", value: localInput(now + 60_000), "aria-label": "To" });
    const out = h("div", { id: "geofence-entries" });
    const range = () => query({ from_ms: new Date(from.value).getTime(), to_ms: new Date(to.value).getTime() });
    const id = encodeURIComponent(f.properties.id);
    this.detail.replaceChildren(h("h3", {}, `Entries into ${f.properties.name}`),
      h("form", { class: "stack", onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const r = await get(`/api/geofences/${id}/entries${range()}`);
          const entries = r.entries || [];
          out.replaceChildren(entries.length
            ? h("ul", { class: "entries" }, entries.map((en) => h("li", {},
                `${en.vehicle_id ?? en.vehicle} · ${fmtTime(en.time_ms ?? en.enter_ms ?? en.start_ms)}`)))
            : h("p", { class: "muted" }, "no entries"));
        } catch (err) {
          toast(err.message, "error");
        }
      } },
        h("div", { class: "row2" }, h("label", {}, "From ", from), h("label", {}, "To ", to)),
        h("div", { class: "row2" }, h("button", { type: "submit" }, "List entries"),
          h("button", { type: "button", onclick: () => { location.href = `/api/geofences/${id}/entries${range()}&format=csv`; } }, "CSV"))),
      out);
  }
}
