// The in-cab tablet's pairing page (served by the vehicle's agent, docs/driver.md "Pairing"):
// the one-time code from `fleet-agent cab pair` is exchanged once for this tablet's token (a
// cookie the agent sets), then the driver app opens.

const $ = (id) => document.getElementById(id);

async function paired() {
  const res = await fetch("/api/me", { credentials: "same-origin" });
  return res.status === 200;
}

async function pair(code, label) {
  const res = await fetch("/api/cab/pair", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ code, label }),
  });
  const data = await res.json().catch(() => ({}));
  return { ok: res.status === 200, error: data.error || `${res.status}` };
}

async function main() {
  const next = new URLSearchParams(location.search).get("next");
  const target = next && next.startsWith("/driver/") ? next : "/driver/";
  const given = new URLSearchParams(location.search).get("code");
  if (given) $("code").value = given;
  if (await paired()) {
    $("paired").hidden = false;
    $("pair-form").hidden = true;
    return;
  }
  $("pair-form").onsubmit = async (e) => {
    e.preventDefault();
    const { ok, error } = await pair($("code").value, $("label").value || "Cab tablet");
    if (ok) {
      location.assign(target);
    } else {
      $("error").textContent = `Not paired: ${error}`;
      $("error").hidden = false;
    }
  };
  document.body.dataset.ready = "true";
}

main();
