// Map images drawn on a canvas: the heading arrow (SDF, tinted per state) and text labels.
// Labels are images rather than text layers because text needs glyph tiles from a server;
// they are drawn on demand (styleimagemissing), so 10,000 vehicles cost only what is visible.

const RATIO = window.devicePixelRatio || 1;

function canvas(w, h) {
  const c = document.createElement("canvas");
  c.width = Math.ceil(w * RATIO);
  c.height = Math.ceil(h * RATIO);
  // drawn once and read back at once: a CPU canvas spares a GPU readback per label
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.scale(RATIO, RATIO);
  return { c, ctx };
}

function image(c, ctx) {
  return ctx.getImageData(0, 0, c.width, c.height);
}

export function arrowImage() {
  const { c, ctx } = canvas(24, 24);
  ctx.fillStyle = "#000";
  ctx.beginPath();
  ctx.moveTo(12, 1);
  ctx.lineTo(21, 21);
  ctx.lineTo(12, 16);
  ctx.lineTo(3, 21);
  ctx.closePath();
  ctx.fill();
  return { data: image(c, ctx), options: { sdf: true, pixelRatio: RATIO } };
}

const probe = document.createElement("canvas").getContext("2d");

export function labelImage(text, { bg = "rgba(255,255,255,0.92)", fg = "#1d2330", bold = false } = {}) {
  const font = `${bold ? "600 " : ""}12px system-ui, sans-serif`;
  probe.font = font;
  const w = Math.ceil(probe.measureText(text).width) + 10;
  const { c, ctx } = canvas(w, 18);
  ctx.fillStyle = bg;
  ctx.strokeStyle = "rgba(0,0,0,0.25)";
  ctx.beginPath();
  ctx.roundRect(0.5, 0.5, w - 1, 17, 4);
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = fg;
  ctx.font = font;
  ctx.textBaseline = "middle";
  ctx.fillText(text, 5, 9.5);
  return { data: image(c, ctx), options: { pixelRatio: RATIO } };
}

/** A street name as on a printed map: dark text with a white halo, no box (it lies along
 * its street, turned with it). */
export function streetImage(text) {
  const font = "italic 11px system-ui, sans-serif";
  probe.font = font;
  const w = Math.ceil(probe.measureText(text).width) + 6;
  const { c, ctx } = canvas(w, 16);
  ctx.font = font;
  ctx.textBaseline = "middle";
  ctx.lineJoin = "round";
  ctx.lineWidth = 3;
  ctx.strokeStyle = "rgba(255,255,255,0.95)";
  ctx.strokeText(text, 3, 8.5);
  ctx.fillStyle = "#3b3b3b";
  ctx.fillText(text, 3, 8.5);
  return { data: image(c, ctx), options: { pixelRatio: RATIO } };
}

/** Draw a missing image whose id is `label:<text>`, `count:<n>` or `street:<name>`
 * (map.setMissingStyleImageResolver). */
export function resolveImage(map, id) {
  if (map.hasImage(id)) return;
  let img = null;
  if (id.startsWith("label:")) img = labelImage(id.slice(6));
  else if (id.startsWith("count:")) img = labelImage(id.slice(6), { bg: "rgba(0,0,0,0)", fg: "#fff", bold: true });
  else if (id.startsWith("street:")) img = streetImage(id.slice(7));
  if (img) map.addImage(id, img.data, img.options);
}
