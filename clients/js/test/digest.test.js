// Window digests, reset reasons and the check opt-in, with the test playing the gateway
// over a fake WebSocket. The digests the "gateway" sends are computed here with
// node:crypto (an implementation of the test's own, not the client's `windowDigest`).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { afterEach, describe, test } from "node:test";

import { connect, DigestMismatch, windowDigest } from "../lq-client.js";
import { FakeClock, FakeWebSockets, fakeFetch, flush } from "./fakes.js";

const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

const Q = { entity: "tasks", sort: ["-p"], limit: 3 };

function sha(pairs) {
  const text = pairs.map(([id, version]) => `${id}\n${version}\n`).join("");
  return createHash("sha256").update(text, "utf8").digest("hex").slice(0, 16);
}

async function setup() {
  const sockets = new FakeWebSockets();
  const client = connect({
    url: "http://gw.test:8080/", token: "tok", WebSocket: sockets.Ctor, clock: new FakeClock(),
    random: () => 0.5, transport: "ws", fetch: fakeFetch(() => [500, {}]), heartbeat: 1e9,
  });
  clients.push(client);
  const view = client.subscribe(Q, { check: 30 });
  const ws = await sockets.accept();
  return { client, view, ws };
}

/** Plays a snapshot of `rows` ([id, version, p]) for `sub` from `seq` on; the next seq. */
function snapshot(ws, sub, seq, rows, reason = "subscribe", digest = undefined) {
  ws.receive({ type: "subscribed", sub });
  ws.receive({ type: "delta", sub, seq: seq++, op: "reset", reason });
  rows.forEach(([id, version, p], i) => ws.receive({
    type: "delta", sub, seq: seq++, op: "enter", id, version, row: { p }, from: -1, to: i,
    cursor: `c${id}`,
  }));
  const pairs = rows.map(([id, version]) => [id, version]);
  ws.receive({ type: "delta", sub, seq: seq++, op: "synced", count: rows.length,
    digest: digest ?? sha(pairs) });
  return seq;
}

async function settle() {
  for (let i = 0; i < 5; i++) await flush();
  await new Promise((resolve) => setTimeout(resolve, 10));
  await flush();
}

describe("digests", () => {
  test("windowDigest is the protocol's digest, the empty window included", async () => {
    assert.equal(await windowDigest([]), "e3b0c44298fc1c14");
    const pairs = [["r1", 7], ["é", 12345678901]];
    assert.equal(await windowDigest(pairs), sha(pairs));
  });

  test("asks for checks; a right digest keeps the view, reasons reach the events", async () => {
    const { view, ws } = await setup();
    const reasons = [];
    view.on("reset", (_, reason) => reasons.push(reason));
    assert.deepEqual(ws.sent.filter((m) => m.type === "subscribe"),
      [{ type: "subscribe", sub: "v1", query: Q, check: 30 }]);
    let seq = snapshot(ws, "v1", 1, [["a", 3, 9], ["b", 4, 5]]);
    ws.receive({ type: "delta", sub: "v1", seq: seq++, op: "check", count: 2,
      digest: sha([["a", 3], ["b", 4]]) });
    await settle();
    assert.equal(view.digestMismatches, 0);
    assert.equal(view.restarts, 0);
    assert.deepEqual(reasons, ["subscribe"]);
    assert.equal(view.resetReason, "subscribe");
    assert.equal(view.synced, true);
  });

  test("a diverged list is caught at the next check and resubscribed", async () => {
    const { view, ws } = await setup();
    const errors = [];
    view.on("error", (e) => errors.push(e));
    let seq = snapshot(ws, "v1", 1, [["a", 3, 9], ["b", 4, 5]]);
    await settle();
    assert.equal(view.restarts, 0);
    // plant a divergence: the client's list "missed" a change of b
    const state = view._state;
    const b = state.rows[1];
    state.rows[1] = Object.freeze({ ...b, version: 5 });
    state.byId.set("b", state.rows[1]);
    ws.receive({ type: "delta", sub: "v1", seq: seq++, op: "check", count: 2,
      digest: sha([["a", 3], ["b", 4]]) });
    await settle();
    assert.equal(view.digestMismatches, 1);
    assert.equal(view.restarts, 1);
    assert.ok(errors[0] instanceof DigestMismatch);
    assert.deepEqual(ws.sent.slice(-2), [
      { type: "unsubscribe", sub: "v1" },
      { type: "subscribe", sub: "v1.1", query: Q, check: 30 },
    ]);
    snapshot(ws, "v1.1", 1, [["a", 3, 9], ["b", 4, 5]]);
    await settle();
    assert.equal(view.synced, true);
    assert.deepEqual(view.rows.map((r) => [r.id, r.version]), [["a", 3], ["b", 4]]);
    assert.equal(view.digestMismatches, 1);
  });

  test("a synced whose digest differs restarts the view; messages are not held back", async () => {
    const { view, ws } = await setup();
    const seen = [];
    view.on("change", (m) => seen.push(m.op));
    const seq = snapshot(ws, "v1", 1, [["a", 3, 9]], "failover", "0000000000000000");
    // applied at once, in order, before the hash resolves
    assert.deepEqual(seen, ["reset", "enter", "synced"]);
    assert.equal(view.resetReason, "failover");
    ws.receive({ type: "delta", sub: "v1", seq, op: "update", id: "a", version: 4,
      row: { p: 1 }, from: 0, to: 0, cursor: "ca" });
    assert.deepEqual(seen, ["reset", "enter", "synced", "update"]);
    await settle();
    assert.equal(view.digestMismatches, 1);
    assert.equal(ws.sent.at(-1).sub, "v1.1");
  });
});
