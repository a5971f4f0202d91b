// The driver app's service worker (scope /driver/): the app itself and the day's route stay
// available without a connection. The app's files: cache first (refreshed in the
// background); the shift (/api/driver/shift): network first, the last answer when offline.
// Nothing else is cached, and writes are never touched (the app's own queue holds them).

const CACHE = "fleet-driver-v1";
const APP = ["/driver/", "/static/app/driver.js", "/static/app/driver.css",
  "/driver/manifest.webmanifest", "/static/app/driver-icon.svg"];
const SHIFT = "/api/driver/shift";

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(APP)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(request);
    if (res.ok) cache.put(request, res.clone());
    return res;
  } catch (err) {
    const hit = await cache.match(request);
    if (hit) return hit;
    throw err;
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreSearch: true });
  const fresh = fetch(request).then((res) => {
    if (res.ok) cache.put(request, res.clone());
    return res;
  });
  if (hit) {
    fresh.catch(() => {});
    return hit;
  }
  return fresh;
}

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname === SHIFT || url.pathname === "/api/me") {
    e.respondWith(networkFirst(e.request));
  } else if (APP.includes(url.pathname)) {
    e.respondWith(url.pathname === "/driver/" ? networkFirst(e.request) : cacheFirst(e.request));
  }
});
