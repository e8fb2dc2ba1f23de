// The live demo: one query over the `demo` entity, its rows as a table, every delta in a
// log. It uses only the JavaScript client the gateway serves at /v1/client.js.
import { connect } from "/v1/client.js";

const ENTITY = "demo";
const NAMES = ["ada", "alan", "barbara", "edsger", "grace", "john", "ken", "leslie",
  "margaret", "niklaus", "radia", "tony", "whitfield", "frances", "donald", "shafi"];
const TEAMS = ["red", "green", "blue"];
const $ = (id) => document.getElementById(id);

async function demoToken() {
  const answer = await fetch("/v1/demo/token", { method: "POST" });
  if (!answer.ok) throw new Error(`demo token: HTTP ${answer.status}`);
  return (await answer.json()).token;
}

const client = connect({ url: location.origin, getToken: demoToken });
let view = null;

function currentQuery() {
  const query = { entity: ENTITY, sort: [$("sort").value, "id"], limit: Number($("limit").value) };
  if ($("team").value) query.where = { team: $("team").value };
  return query;
}

function showStatus(status) {
  const badge = $("status");
  badge.textContent = status;
  badge.className = `status ${status}`;
  badge.dataset.status = status;
}

function render(changedId) {
  const body = $("rows").tBodies[0];
  body.replaceChildren(...view.rows.map((row, i) => {
    const tr = document.createElement("tr");
    tr.dataset.id = row.id;
    tr.dataset.version = String(row.version);
    if (row.id === changedId) tr.className = "flash";
    for (const [text, num] of [[i, true], [row.id], [row.row.name], [row.row.team],
      [row.row.score, true], [row.version, true]]) {
      const td = document.createElement("td");
      td.textContent = text ?? "";
      if (num) td.className = "num";
      tr.append(td);
    }
    return tr;
  }));
  $("rows").dataset.synced = String(view.synced);
  $("rows").dataset.seq = String(view.restarts) + ":" + String(view.rows.length);
}

function log(message) {
  const item = document.createElement("li");
  item.className = message.op;
  const where = message.op === "move" ? ` ${message.from}→${message.to}`
    : message.op === "enter" ? ` at ${message.to}` : message.op === "leave" ? ` from ${message.from}` : "";
  item.textContent = `${message.seq} ${message.op}${message.id ? " " + message.id : ""}${where}`;
  $("log").prepend(item);
  while ($("log").children.length > 30) $("log").lastElementChild.remove();
}

function subscribe() {
  if (view) view.unsubscribe();
  const query = currentQuery();
  $("query").textContent = JSON.stringify(query);
  view = client.subscribe(query);
  view.on("change", (message) => { log(message); render(message.id); });
  view.on("status", (status) => showStatus(status));
  view.on("error", (error) => log({ seq: "!", op: "error", id: error.message }));
  render();
}

const pick = (list) => list[Math.floor(Math.random() * list.length)];

async function someRowId() {
  const page = await client.query(ENTITY, { limit: 50 });
  return page.rows.length ? pick(page.rows).id : null;
}

async function addRow() {
  const id = `r${Math.random().toString(36).slice(2, 8)}`;
  await client.put(ENTITY, id, { name: pick(NAMES), team: pick(TEAMS), score: Math.floor(Math.random() * 100) });
}

async function updateRow() {
  const id = await someRowId();
  if (id) await client.patch(ENTITY, id, { score: Math.floor(Math.random() * 100) });
}

async function removeRow() {
  const id = await someRowId();
  if (id) await client.delete(ENTITY, id);
}

async function burst() {
  for (let i = 0; i < 20; i++) await pick([addRow, addRow, updateRow, updateRow, removeRow])();
}

function button(id, action) {
  $(id).addEventListener("click", () => action().catch((error) => log({ seq: "!", op: "error", id: error.message })));
}

button("add", addRow);
button("update", updateRow);
button("remove", removeRow);
button("burst", burst);
for (const id of ["team", "sort", "limit"]) $(id).addEventListener("change", subscribe);
client.on("status", showStatus);
subscribe();
window.lqDemo = { client, get view() { return view; }, query: currentQuery };
