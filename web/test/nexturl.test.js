// The login page's `next` (web/src/nexturl.js): only a path on this origin.
import assert from "node:assert/strict";
import { test } from "node:test";
import { safeNext } from "../src/nexturl.js";

const ORIGIN = "https://fleet.example";
// what the page reads: URLSearchParams decodes the query string first
const fromQuery = (qs) => safeNext(new URLSearchParams(qs).get("next"), ORIGIN);

test("paths on this origin are kept, with their query and fragment", () => {
  assert.equal(safeNext("/", ORIGIN), "/");
  assert.equal(safeNext("/#vehicle=truck-1", ORIGIN), "/#vehicle=truck-1");
  assert.equal(safeNext("/api/me?x=1", ORIGIN), "/api/me?x=1");
  assert.equal(fromQuery("next=%2F%3Ftab%3Dalerts"), "/?tab=alerts");
});

test("anything that leaves the origin becomes /", () => {
  for (const qs of [
    "next=/%5Cevil.example", "next=%2F%5Cevil.example", "next=/%5C/evil.example",
    "next=//evil.example", "next=%2F%2Fevil.example", "next=///evil.example",
    "next=/%09/evil.example", "next=/%0A/evil.example", "next=/%0D%0A/evil.example",
    "next=/\\evil.example", "next=\\\\evil.example",
    "next=javascript:alert(1)", "next=JavaScript%3Aalert(1)", "next=%20javascript:alert(1)",
    "next=https://evil.example/", "next=http:evil.example", "next=https:%2F%2Fevil.example",
    "next=data:text/html,x", "next=evil.example", "next=", "",
  ]) {
    const to = fromQuery(qs);
    assert.equal(to, "/", `${qs} → ${to}`);
    assert.equal(new URL(to, ORIGIN).origin, ORIGIN);
  }
});

test("doubly encoded separators stay a path here", () => {
  for (const qs of ["next=/%255Cevil.example", "next=/%252F%252Fevil.example"]) {
    assert.equal(new URL(fromQuery(qs), ORIGIN).origin, ORIGIN, qs);
  }
});

test("not a string", () => {
  assert.equal(safeNext(null, ORIGIN), "/");
  assert.equal(safeNext(undefined, ORIGIN), "/");
});
