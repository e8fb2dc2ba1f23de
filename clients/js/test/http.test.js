// The data API over an injected fetch (PROTOCOL.md section 7): each call's method,
// path, headers and body; every error code, HTTP status and close code mapped to its
// class as the Python client's errors.py does; 401 retried once with a new token; and
// the small pure parts (tokenExpiry, Backoff).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Backoff, closeError, connect, errorFor, Forbidden, InvalidQuery, InvalidRequest, LimitExceeded,
  LiveError, NotFound, PreconditionFailed, RateLimited, tokenExpiry, Unauthorized, Unavailable,
} from "../lq-client.js";
import { FakeEventSources, fakeFetch, jwt } from "./fakes.js";

/** A client that only talks HTTP (SSE transport, no view opened: no stream). */
function client(handler, options = {}) {
  const fetch = fakeFetch(handler);
  const lq = connect({ url: "http://gw.test/", token: "tok", transport: "sse",
    EventSource: new FakeEventSources().Ctor, fetch, ...options });
  return { lq, fetch };
}

const ok = (body) => () => [200, body];

describe("data calls", () => {
  test("put: PUT the row as JSON with the bearer token; ttl, ifMatch, createOnly", async () => {
    const { lq, fetch } = client(ok({ id: "a/1", version: 7 }));
    assert.deepEqual(await lq.put("tasks", "a/1", { n: 1 }), { id: "a/1", version: 7 });
    await lq.put("tasks", "a", { n: 2 }, { ttl: 30, ifMatch: 6 });
    await lq.put("tasks", "a", { n: 3 }, { createOnly: true });
    const [first, second, third] = fetch.calls;
    assert.equal(first.method, "PUT");
    assert.equal(first.url, "http://gw.test/v1/entities/tasks/rows/a%2F1");
    assert.deepEqual(first.body, { n: 1 });
    assert.equal(first.headers.Authorization, "Bearer tok");
    assert.equal(first.headers["Content-Type"], "application/json");
    assert.equal(second.url, "http://gw.test/v1/entities/tasks/rows/a?ttl=30");
    assert.equal(second.headers["If-Match"], '"6"');
    assert.equal(third.headers["If-None-Match"], "*");
  });

  test("patch sends a merge patch; delete has no body", async () => {
    const { lq, fetch } = client(ok({ id: "a", version: 8 }));
    await lq.patch("tasks", "a", { done: true }, { ifMatch: 7 });
    await lq.delete("tasks", "a");
    assert.equal(fetch.calls[0].method, "PATCH");
    assert.equal(fetch.calls[0].headers["Content-Type"], "application/merge-patch+json");
    assert.equal(fetch.calls[0].headers["If-Match"], '"7"');
    assert.equal(fetch.calls[1].method, "DELETE");
    assert.equal(fetch.calls[1].body, undefined);
  });

  test("get returns the row, or null when there is none", async () => {
    const row = { id: "a", version: 3, row: { n: 1 } };
    const { lq, fetch } = client((call) => (call.url.endsWith("/a") ? [200, row]
      : [404, { error: { code: "not_found", message: "no row" } }]));
    assert.deepEqual(await lq.get("tasks", "a"), row);
    assert.equal(await lq.get("tasks", "b"), null);
    assert.equal(fetch.calls[0].method, "GET");
  });

  test("query posts where/sort/limit/after; batch posts ops and returns the results", async () => {
    const { lq, fetch } = client((call) => (call.url.endsWith("/batch")
      ? [200, { results: [{ status: 200, id: "a", version: 1 }] }] : [200, { rows: [], next: null }]));
    assert.deepEqual(await lq.query("tasks", { where: { done: false }, sort: ["-p"], limit: 5 }), { rows: [], next: null });
    assert.deepEqual(fetch.calls[0].body, { where: { done: false }, sort: ["-p"], limit: 5 });
    assert.equal(fetch.calls[0].url, "http://gw.test/v1/entities/tasks/query");
    const ops = [{ op: "put", entity: "tasks", id: "a", row: { n: 1 } }];
    assert.deepEqual(await lq.batch(ops), [{ status: 200, id: "a", version: 1 }]);
    assert.deepEqual(fetch.calls[1].body, { ops });
  });

  test("each error answer raises its class with code, status and message", async () => {
    const cases = [
      [400, "invalid_request", InvalidRequest], [400, "invalid_query", InvalidQuery],
      [401, "unauthorized", Unauthorized], [403, "forbidden", Forbidden], [404, "not_found", NotFound],
      [413, "too_large", InvalidRequest], [422, "invalid_row", InvalidRequest],
      [429, "rate_limited", RateLimited], [503, "unavailable", Unavailable], [500, "internal", LiveError],
    ];
    for (const [status, code, Class] of cases) {
      const { lq } = client(() => [status, { error: { code, message: `m ${code}` } }]);
      await assert.rejects(lq.put("t", "a", {}), (e) => {
        assert.equal(e.constructor, Class, code);
        assert.equal(e.code, code);
        assert.equal(e.status, status);
        assert.equal(e.message, `m ${code}`);
        return e instanceof LiveError;
      });
    }
  });

  test("a failed precondition carries the current version", async () => {
    const { lq } = client(() => [412, { error: { code: "precondition_failed", message: "v", version: 9 } }]);
    await assert.rejects(lq.put("t", "a", {}, { ifMatch: 3 }), (e) => e instanceof PreconditionFailed && e.version === 9);
  });

  test("a write whose reply was lost says its outcome is unknown; a plain 503 does not", async () => {
    const lost = client(() => [503, { error: { code: "unavailable", message: "u", outcome: "unknown" } }]);
    await assert.rejects(lost.lq.put("t", "a", {}), (e) => e instanceof Unavailable && e.outcome === "unknown");
    const refused = client(() => [503, { error: { code: "unavailable", message: "u" } }]);
    await assert.rejects(refused.lq.put("t", "a", {}), (e) => e instanceof Unavailable && e.outcome === null);
  });

  test("no answer, or one that is not lq's, is Unavailable; a bare 401 page is Unauthorized", async () => {
    await assert.rejects(client(() => ["network"]).lq.get("t", "a"), Unavailable);
    await assert.rejects(client(() => [502, "<html>bad gateway</html>"]).lq.get("t", "a"), Unavailable);
    await assert.rejects(client(() => [200, "<html>a portal</html>"]).lq.get("t", "a"), Unavailable);
    await assert.rejects(client(() => [401, "nope"]).lq.get("t", "a"), Unauthorized);
  });

  test("a 401 is retried once when getToken gives a different token", async () => {
    const tokens = ["old", "new"];
    const { lq, fetch } = client((call) => (call.headers.Authorization === "Bearer new" ? [200, { id: "a", version: 1 }]
      : [401, { error: { code: "unauthorized", message: "expired" } }]), { token: undefined, getToken: () => tokens.shift() ?? "new" });
    assert.deepEqual(await lq.put("t", "a", {}), { id: "a", version: 1 });
    assert.deepEqual(fetch.calls.map((c) => c.headers.Authorization), ["Bearer old", "Bearer new"]);
    let n = 0;
    const second = client(() => [401, { error: { code: "unauthorized", message: "expired" } }],
      { token: undefined, getToken: () => `t${++n}` });
    await assert.rejects(second.lq.put("t", "a", {}), Unauthorized);
    assert.deepEqual(second.fetch.calls.map((c) => c.headers.Authorization), ["Bearer t1", "Bearer t2"]);
    const same = client(() => [401, { error: { code: "unauthorized", message: "x" } }], { token: undefined, getToken: () => "s" });
    await assert.rejects(same.lq.put("t", "a", {}), Unauthorized);
    assert.equal(same.fetch.calls.length, 1, "the same token is not sent again");
  });
});

describe("error mapping", () => {
  test("protocol codes map as the Python client's errors.py", () => {
    const expected = {
      unauthorized: Unauthorized, forbidden: Forbidden, invalid_query: InvalidQuery,
      invalid_request: InvalidRequest, invalid_row: InvalidRequest, too_large: InvalidRequest,
      invalid_message: InvalidRequest, unknown_subscription: InvalidRequest,
      duplicate_subscription: InvalidRequest, not_found: NotFound, precondition_failed: PreconditionFailed,
      too_many_subscriptions: LimitExceeded, rate_limited: RateLimited, unavailable: Unavailable,
      overloaded: Unavailable, internal: LiveError, toString: LiveError,
    };
    for (const [code, Class] of Object.entries(expected)) {
      const e = errorFor(code, "m", { sub: "v1" });
      assert.equal(e.constructor, Class, code);
      assert.equal(e.sub, "v1");
      assert.ok(e instanceof LiveError && e instanceof Error);
    }
    assert.ok(errorFor("rate_limited", "m") instanceof LimitExceeded);
  });

  test("without a code, the HTTP status decides", () => {
    const expected = { 401: Unauthorized, 403: Forbidden, 404: NotFound, 412: PreconditionFailed,
      429: RateLimited, 503: Unavailable, 502: Unavailable };
    for (const [status, Class] of Object.entries(expected)) {
      assert.equal(errorFor(null, "m", { status: Number(status) }).constructor, Class, status);
    }
  });

  test("close codes 4401/4408/4403/1013 map; others say nothing", () => {
    assert.ok(closeError(4401) instanceof Unauthorized);
    assert.ok(closeError(4408) instanceof Unauthorized);
    assert.ok(closeError(4403, "scope") instanceof Forbidden);
    assert.equal(closeError(4403, "scope").message, "scope");
    assert.equal(closeError(1013).code, "overloaded");
    assert.equal(closeError(1006), null);
    assert.equal(closeError(1000), null);
  });

  test("errors print their class and message", () => {
    assert.equal(String(errorFor("forbidden", "no lq:read:tasks")), "Forbidden: no lq:read:tasks");
  });
});

describe("tokens and backoff", () => {
  test("tokenExpiry reads exp from the payload (base64url, UTF-8) without verifying", () => {
    assert.equal(tokenExpiry(jwt({ exp: 1800000000, tenant: "ünïcode/?>" })), 1800000000);
    assert.equal(tokenExpiry(jwt({ tenant: "t" })), null);
    assert.equal(tokenExpiry(jwt({ exp: "soon" })), null);
    assert.equal(tokenExpiry("not a jwt"), null);
    assert.equal(tokenExpiry("a.!!!.c"), null);
  });

  test("Backoff: min(cap, first * factor**n) times a jitter in [1 - j, 1 + j], never over cap", () => {
    const b = new Backoff({ first: 100, cap: 5000, factor: 2, jitter: 0.5 });
    assert.deepEqual([0, 1, 2, 3, 6, 100].map((n) => b.delay(n, () => 0.5)), [100, 200, 400, 800, 5000, 5000]);
    assert.equal(b.delay(0, () => 0), 50);
    assert.equal(b.delay(0, () => 1), 150);
    assert.equal(b.delay(10, () => 1), 5000);
    assert.throws(() => new Backoff({ first: 0 }), RangeError);
    assert.throws(() => new Backoff({ first: 10, cap: 5 }), RangeError);
    assert.throws(() => new Backoff({ jitter: 2 }), RangeError);
  });

  test("connect() refuses options it cannot work with", () => {
    assert.throws(() => connect({ url: "http://x" }), /exactly one of token and getToken/);
    assert.throws(() => connect({ url: "http://x", token: "t", getToken: () => "t" }), /exactly one/);
    assert.throws(() => connect({ url: "http://x", token: "t", transport: "carrier-pigeon" }), /unknown transport/);
    assert.throws(() => connect({ url: "http://x", token: "t", WebSocket: undefined, EventSource: undefined }),
      /neither WebSocket nor EventSource/);
  });
});
