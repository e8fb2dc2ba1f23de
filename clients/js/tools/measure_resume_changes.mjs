// Measure the JS client's changes-mode log-position resume against a running cluster:
//
//   node --experimental-websocket clients/js/tools/measure_resume_changes.mjs http://127.0.0.1:8080 "$TOKEN"
//
// (Node 20 needs the flag for its WebSocket; Node 22 has it by default.) Writes 1,000
// rows to a new entity, follows them in changes mode (the snapshot's messages and bytes
// are counted), drops the socket and keeps the client from reconnecting while 3 rows
// change (2 updates, 1 delete), then lets it reconnect: it names its pos, and the
// resume's messages and bytes are counted. Prints one JSON line, with whether the set
// then equals a fresh query. Not a test (the suite replays a recording instead).
import { connect } from "../lq-client.js";

const [url, token] = process.argv.slice(2);
const sockets = [];
let blocked = false;
class Recording extends WebSocket {
  constructor(u) {
    if (blocked) throw new Error("blocked by the test");
    super(u);
    this.frames = [];
    sockets.push(this);
    this.addEventListener("message", (e) => this.frames.push(e.data));
  }
}
const tally = (ws) => {
  let messages = 0, bytes = 0;
  for (const f of ws.frames) {
    const parsed = JSON.parse(f);
    const deltas = (Array.isArray(parsed) ? parsed : [parsed]).filter((m) => m.type === "delta");
    if (deltas.length) { messages += deltas.length; bytes += Buffer.byteLength(f); }
  }
  return { messages, bytes };
};
const client = connect({ url, token, WebSocket: Recording, transport: "ws" });
const entity = `js_measure_${Date.now()}`;
for (let b = 0; b < 1000; b += 250) {
  await client.batch(Array.from({ length: 250 }, (_, i) => ({ op: "put", entity, id: `r${String(b + i).padStart(4, "0")}`, row: { p: b + i, title: `task ${b + i}` } })));
}
const query = { entity, mode: "changes", limit: 1000 };
const view = client.subscribe(query);
await view.whenSynced(30000);
const snapshot = tally(sockets[0]);
blocked = true;
sockets[0].close();
await new Promise((r) => setTimeout(r, 200));
await client.put(entity, "r0001", { p: -1, title: "changed" });
await client.put(entity, "r0002", { p: -2, title: "changed" });
await client.delete(entity, "r0003");
blocked = false;
const t0 = Date.now();
while (!(view.resumes + view.resumeMisses > 0 && view.synced) && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 20));
const resumed = tally(sockets.at(-1));
const page = await client.query(entity, { limit: 1000 });
const got = new Map(view.rows.map((r) => [r.id, r.version]));
const same = page.rows.length === got.size && page.rows.every((r) => got.get(r.id) === r.version);
console.log(JSON.stringify({ rows: page.rows.length, resumes: view.resumes, resumeMisses: view.resumeMisses, restarts: view.restarts, equalsFreshQuery: same, snapshot, resume: resumed }));
client.close();
process.exit(0);
