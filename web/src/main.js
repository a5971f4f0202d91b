// The dispatcher app: session, map, live layer, list, panel, history, geofences, alerts,
// dispatch, maintenance.
import * as maplibregl from "maplibre-gl";
import { ApiError, get, post, setCsrf } from "./api.js";
import { Alerts } from "./alerts.js";
import { addOverlay, initialStyle } from "./basemap.js";
import { Dispatch } from "./dispatch.js";
import { Maintenance } from "./maintenance.js";
import { $, toast } from "./dom.js";
import { Fleet } from "./fleet.js";
import { Geofences } from "./geofences.js";
import { History } from "./history.js";
import { LiveSocket } from "./live.js";
import { LiveLayer } from "./livemap.js";
import { Notifications } from "./notify.js";
import { VehicleList } from "./list.js";
import { VehiclePanel } from "./panel.js";

const ROLE_RANK = { viewer: 1, dispatcher: 2, admin: 3 };
const POLL_VEHICLES_MS = 15000; // link, CAN and backlog are not on the hub: read them this often
const ASSETS = new URL("./", import.meta.url).href; // /app/

maplibregl.setWorkerUrl(new URL("maplibre-gl-worker.mjs", ASSETS).href);

function toLogin() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

async function session() {
  try {
    return await get("/api/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      toLogin();
      return null;
    }
    throw err;
  }
}

async function mapConfig() {
  try {
    return await get("/api/map/config");
  } catch {
    return {};
  }
}

function tabs(onShow) {
  const buttons = [...document.querySelectorAll("[role=tab]")];
  const show = (name) => {
    for (const b of buttons) {
      const on = b.dataset.tab === name;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
      $(`#tab-${b.dataset.tab}`).hidden = !on;
    }
    onShow(name);
  };
  buttons.forEach((b, i) => {
    b.addEventListener("click", () => show(b.dataset.tab));
    b.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = buttons[(i + step + buttons.length) % buttons.length];
      next.focus();
      show(next.dataset.tab);
    });
  });
  return show;
}

async function main() {
  const me = await session();
  if (!me) return;
  setCsrf(me.csrf_token);
  const role = me.user.role;
  const may = (needed) => (ROLE_RANK[role] ?? 0) >= ROLE_RANK[needed];
  document.body.dataset.role = role;
  $("#whoami").textContent = `${me.user.name} (${role})`;
  $("#logout").addEventListener("click", async () => {
    // the hub closes this session's socket at logout: that close is ours, not a lost session
    socket.stop();
    try {
      await post("/api/logout");
    } finally {
      location.assign("/login");
    }
  });
  $("#menu").addEventListener("click", (e) => {
    const side = $("#side");
    side.classList.toggle("collapsed");
    e.currentTarget.setAttribute("aria-expanded", String(!side.classList.contains("collapsed")));
    setTimeout(() => map.resize(), 250);
  });

  const config = await mapConfig();
  const map = new maplibregl.Map({
    container: "map",
    style: await initialStyle(ASSETS, config),
    center: config.center ?? [10, 50],
    zoom: config.zoom ?? 3,
    attributionControl: { compact: true,
      customAttribution: ["Natural Earth", config.overlay_attribution].filter(Boolean) },
    keyboard: true,
  });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");
  await new Promise((resolve) => map.once("load", resolve));
  addOverlay(map, config.overlay_url);

  const fleet = new Fleet();
  let live;
  let panel;
  let history;
  const select = (id, opts) => {
    live.select(id, opts);
    list.select(id);
    if (id) panel.open(id);
  };
  live = new LiveLayer(map, fleet, { onSelect: select });
  const list = new VehicleList($("#tab-vehicles"), $("#counts"), fleet, {
    onSelect: (id) => select(id, { reveal: true }),
    onFilter: (hidden) => live.setHidden(hidden),
  });
  const showTab = tabs((name) => {
    if (name === "history") history.refreshVehicles(live.selected);
    if (name === "geofences") geofences.load();
    if (name === "dispatch") dispatch.load();
    if (name === "maintenance") maintenance.load();
    if (name === "notifications") notifications.load();
  });
  history = new History($("#tab-history"), map, fleet);
  const geofences = new Geofences($("#tab-geofences"), map, { may });
  const dispatch = new Dispatch($("#tab-dispatch"), map, { may });
  const maintenance = new Maintenance($("#tab-maintenance"));
  const notifications = new Notifications($("#tab-notifications"));
  const alerts = new Alerts($("#tab-alerts"), map, fleet, {
    may,
    onCount: (n) => {
      $("#alert-count").textContent = n;
      $("#alert-badge").classList.toggle("hot", n > 0);
    },
  });
  panel = new VehiclePanel($("#panel"), fleet, {
    may,
    onClose: () => { live.select(null); live.following = null; list.select(null); },
    onFollow: (id) => {
      live.follow(live.following === id ? null : id);
      $("#follow")?.classList.toggle("active", live.following === id);
      toast(live.following ? `Following ${id}` : "Stopped following");
    },
    onHistory: (id) => { showTab("history"); history.refreshVehicles(id); history.quick(3600_000); },
    onShowAlert: (a) => alerts.show(a),
  });
  $("#fit-all").addEventListener("click", () => live.fitAll());
  $("#alert-badge").addEventListener("click", () => showTab("alerts"));
  map.on("dragstart", () => { live.following = null; });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("#panel").hidden) panel.close();
  });

  const pollVehicles = async () => {
    try {
      const r = await get("/api/vehicles");
      const now = Date.now();
      for (const item of r.vehicles || []) fleet.merge(item, now);
    } catch (err) {
      if (err.status === 401) toLogin();
    }
  };
  await pollVehicles();
  setInterval(pollVehicles, POLL_VEHICLES_MS);
  geofences.load();
  alerts.reload();

  const socket = new LiveSocket({
    workerUrl: new URL("live-worker.js", ASSETS).href,
    topics: ["live_updates:all", "alerts", "dispatch"],
    onFix: fleet.pushFix.bind(fleet),
    onDispatch: (change) => dispatch.changed(change),
    onAlert: (a) => {
      alerts.push(a);
      if (a.vehicle === panel.id) panel.refresh(); // its open alerts now, not at the next poll
    },
    onState: (s) => {
      const el = $("#conn");
      el.textContent = s;
      el.dataset.state = s;
    },
    onClosedUnauthorized: async () => {
      try {
        await get("/api/me");
        return false;
      } catch (err) {
        if (err.status === 401) {
          toLogin();
          return true;
        }
        return false;
      }
    },
  });
  socket.start();

  let lastSecond = 0;
  let fitted = false;
  const frame = () => {
    const now = Date.now();
    live.frame(now);
    if (!fitted && fleet.vehicles.size && [...fleet.vehicles.values()].some((v) => v.lon != null)) {
      fitted = true; // the first positions decide the first view
      live.fitAll();
    }
    history.frame(performance.now());
    if (now - lastSecond >= 1000) {
      lastSecond = now;
      list.tick(now);
      panel.tick();
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  // for tests, the benchmark and the curious: the running app's parts
  window.fleetApp = { map, fleet, live, list, panel, history, geofences, alerts, dispatch, socket, me };
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  console.error("the app could not start:", err);
  toast(`The app could not start: ${err.message}`, "error");
});
