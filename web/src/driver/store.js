// The device's own storage (IndexedDB): the queue of actions not yet acknowledged by the
// backend (with their images as Blobs), the device id and its action counter, the last
// shift seen (for offline start). An action is in the queue, with its key and sequence
// number, before the app says "saved": closing the app, a reload or a dead battery loses
// nothing that was shown as saved.

const DB_NAME = "fleet-driver";
const DB_VERSION = 1;

let dbPromise = null;

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("aborted"));
  });
}

export function open() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const r = indexedDB.open(DB_NAME, DB_VERSION);
      r.onupgradeneeded = () => {
        const db = r.result;
        db.createObjectStore("queue", { keyPath: "action.device_seq" });
        db.createObjectStore("meta");
      };
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }
  return dbPromise;
}

export async function getMeta(key) {
  const db = await open();
  return req(db.transaction("meta").objectStore("meta").get(key));
}

export async function setMeta(key, value) {
  const db = await open();
  const tx = db.transaction("meta", "readwrite");
  tx.objectStore("meta").put(value, key);
  return done(tx);
}

function randomId(prefix) {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return prefix + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** This device's id (made once, kept). */
export async function deviceId() {
  let id = await getMeta("device_id");
  if (!id) {
    id = randomId("dev-");
    await setMeta("device_id", id);
  }
  return id;
}

/**
 * Queue an action: its key and the device's next sequence number are given here, in the
 * same transaction that stores it (two taps never share a number). `files`: [{kind, blob}].
 */
export async function enqueue(fields, files = []) {
  const dev = await deviceId();
  const db = await open();
  const tx = db.transaction(["meta", "queue"], "readwrite");
  const meta = tx.objectStore("meta");
  const last = (await req(meta.get("device_seq"))) || 0;
  const seq = last + 1;
  meta.put(seq, "device_seq");
  const action = { key: randomId(`${dev}-`).slice(0, 64), device_id: dev, device_seq: seq,
    done_ms: Date.now(), ...fields };
  const item = { action, files, uploaded: {}, state: "queued" };
  tx.objectStore("queue").put(item);
  await done(tx);
  return item;
}

export async function queued() {
  const db = await open();
  return req(db.transaction("queue").objectStore("queue").getAll()); // by device_seq
}

export async function update(item) {
  const db = await open();
  const tx = db.transaction("queue", "readwrite");
  tx.objectStore("queue").put(item);
  return done(tx);
}

export async function remove(seq) {
  const db = await open();
  const tx = db.transaction("queue", "readwrite");
  tx.objectStore("queue").delete(seq);
  return done(tx);
}
