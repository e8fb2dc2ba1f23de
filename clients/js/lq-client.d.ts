// Type declarations of lq-client.js, the JavaScript client of lq (docs/protocol.md).

/** A JSON value as the protocol carries it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A row's values as written, without `id`. */
export type Values = { [column: string]: Json };

/** A query (PROTOCOL.md section 2). */
export interface Query {
  entity: string;
  where?: { [key: string]: Json };
  sort?: string[];
  /** Required in window mode; the server's maximum when left out in changes mode. */
  limit?: number;
  /** A row's `cursor`: the window starts strictly after it (window mode only). */
  after?: string | null;
  mode?: "window" | "changes";
}

/** One row of a live list. */
export interface Row {
  readonly id: string;
  readonly version: number;
  readonly row: Values;
  /** Window mode: where to `reanchor` after this row. */
  readonly cursor: string | null;
}

/** One live message (PROTOCOL.md section 3), as the server sent it. */
export interface LiveMessage {
  type: "delta";
  sub: string;
  seq: number;
  op: "reset" | "resume" | "enter" | "leave" | "move" | "update" | "synced" | "check" | "match"
    | "unmatch";
  id?: string;
  version?: number;
  row?: Values | null;
  from?: number;
  to?: number;
  cursor?: string;
  count?: number;
  truncated?: boolean;
  /** `reset`: why (`subscribe`, `failover`, `resume_miss`, ...). */
  reason?: string;
  /** Window mode's `synced` and `check`: the list's digest (16 hex digits). */
  digest?: string;
  /** Changes mode: the log position of a live `match`/`update`/`unmatch`, of `synced`,
   * and the one a `resume` echoes (opaque, at most 64 characters). */
  pos?: string;
}

/** `connecting`: never live yet; `live`: up (a view: and its list synced);
 * `reconnecting`: lost, retrying (the list is the last known, not live);
 * `offline`: closed, ended, or the token refused for good. */
export type Status = "connecting" | "live" | "reconnecting" | "offline";

export interface ErrorDetails {
  sub?: string | null;
  status?: number | null;
  version?: number | null;
  outcome?: string | null;
}

/** The root of every error of the client. `code` is the protocol's error code. */
export class LiveError extends Error {
  constructor(code: string, message: string, details?: ErrorDetails);
  readonly code: string;
  /** The view's id, for a live error about one view. */
  readonly sub: string | null;
  /** The HTTP status, when there was one. */
  readonly status: number | null;
  /** For `PreconditionFailed`: the row's current version, or null. */
  readonly version: number | null;
  /** `"unknown"` on an `Unavailable` write whose reply was lost: it may have been applied. */
  readonly outcome: string | null;
}
/** `unauthorized`: HTTP 401, close 4401/4408. */
export class Unauthorized extends LiveError {}
/** `forbidden`: HTTP 403, close 4403, a read scope missing. */
export class Forbidden extends LiveError {}
/** `invalid_query`. */
export class InvalidQuery extends LiveError {}
/** `invalid_request`, `invalid_row`, `too_large`, `invalid_message`, `unknown_subscription`,
 * `duplicate_subscription`. */
export class InvalidRequest extends LiveError {}
/** `not_found`. */
export class NotFound extends LiveError {}
/** `precondition_failed`: `version` is the current one, or null. */
export class PreconditionFailed extends LiveError {}
/** `too_many_subscriptions`. */
export class LimitExceeded extends LiveError {}
/** `rate_limited`. */
export class RateLimited extends LimitExceeded {}
/** `unavailable`, `overloaded` (close 1013); no answer, or not an lq answer. */
export class Unavailable extends LiveError {}
/** `protocol_violation`: the live messages broke a rule of section 3 (the view restarted). */
export class ProtocolViolation extends LiveError {
  constructor(message: string);
}

/** The list's digest differed from a `synced` or `check` digest: it diverged (the view restarted). */
export class DigestMismatch extends ProtocolViolation {}

/** The window digest of PROTOCOL.md section 3 over [id, version] pairs in order (16 hex
 * digits); null where Web Crypto is missing (outside a secure context). */
export function windowDigest(pairs: Array<[string, number]>): Promise<string | null>;

/** The typed error for a protocol code; without one, for the HTTP status. */
export function errorFor(code: string | null | undefined, message: string, details?: ErrorDetails): LiveError;
/** The typed error of a WebSocket close code (4401, 4403, 4408, 1013), or null. */
export function closeError(code: number, reason?: string): LiveError | null;
/** The `exp` claim of a JWT (seconds since the epoch), read without verifying; or null. */
export function tokenExpiry(token: string): number | null;

export interface BackoffOptions {
  /** Milliseconds before the first retry (default 100). */
  first?: number;
  /** The longest pause, in milliseconds (default 5000). */
  cap?: number;
  /** Growth per retry (default 2). */
  factor?: number;
  /** Each pause is scaled by a uniform factor in [1 - jitter, 1 + jitter] (default 0.5). */
  jitter?: number;
}

/** Capped, jittered exponential backoff between reconnects. */
export class Backoff {
  constructor(options?: BackoffOptions);
  readonly first: number;
  readonly cap: number;
  readonly factor: number;
  readonly jitter: number;
  /** The pause (ms) before retry `retry` (0-based): min(cap, first * factor**retry) jittered. */
  delay(retry: number, random?: () => number): number;
}

/** The list of one subscription: section 3 applied exactly, and checked. */
export class ViewState {
  constructor(window: boolean, limit: number | null);
  window: boolean;
  limit: number | null;
  seq: number;
  started: boolean;
  synced: boolean;
  truncated: boolean;
  /** The last reset's reason ("" when it gave none). */
  reason: string;
  /** Synced since the last reset or resume (changes mode: whole, not truncated, and with
   * a pos): the next subscribe may declare it. */
  resumable: boolean;
  /** Changes mode: between a `resume` and its `synced`, where `match` is an upsert and
   * `unmatch` of a row not held is a no-op. */
  resuming: boolean;
  /** Changes mode: the log position of the last message applied that carried one, or null. */
  pos: string | null;
  /** A new subscription: seq starts again and a reset is due. */
  restart(): void;
  /** Window mode: the [id, version] pairs to declare in a resume; null when not resumable. */
  held(): Array<[string, number]> | null;
  /** Changes mode: the log position to resume from; null when not resumable. */
  heldPos(): string | null;
  /** The list now (window mode in order, changes mode in arrival order). */
  current(): readonly Row[];
  /** Apply one live message, or throw `ProtocolViolation` and change nothing. */
  apply(message: LiveMessage): void;
}

export interface ViewEvents {
  /** Every live message, after it was applied to `rows`. */
  change: (message: LiveMessage, view: LiveView) => void;
  /** A snapshot starts: `rows` is empty until its rows arrive. `reason`: `subscribe`,
   * `reanchor`, `resync`, `failover`, `redis_restart`, `trimmed`, `reload`, `overflow`,
   * `resume_miss`, or one this client does not know yet ("" when the server gave none). */
  reset: (view: LiveView, reason: string) => void;
  /** `rows` equals the query result. */
  synced: (view: LiveView) => void;
  /** A `check` the view asked for was applied (its digest is verified asynchronously). */
  check: (view: LiveView) => void;
  /** A refused subscribe or reanchor, a lost scope (the view ends), or a
   * `ProtocolViolation` (the view restarted by itself). */
  error: (error: LiveError) => void;
  status: (status: Status, view: LiveView) => void;
}

export interface SubscribeOptions {
  /** Seconds (1-3600) between the server's `check` messages of the list's digest
   * (WebSocket, window mode; an SSE stream gets none). */
  check?: number;
}

export interface ClientEvents {
  status: (status: Status, client: LiveClient) => void;
  /** A connection-level error; the client keeps trying unless its status is `offline`. */
  error: (error: LiveError) => void;
}

/** One live query. */
export class LiveView {
  /** The view's id (`v1`, `v2`, ...). */
  readonly id: string;
  /** The id on the wire: `id`, then `id.n` after the n-th restart. */
  readonly sub: string;
  /** The query followed now (a reanchor changes `after` and `limit`). */
  readonly query: Query;
  readonly mode: "window" | "changes";
  /** The list now: a frozen array, replaced on every change. */
  readonly rows: readonly Row[];
  /** Whether `rows` equals the query result (false between a reset and its synced). */
  readonly synced: boolean;
  /** Changes mode: the snapshot held only the first `limit` matching rows. */
  readonly truncated: boolean;
  /** `live` only while the transport is up and `rows` is synced (or paging by reanchor). */
  readonly status: Status;
  /** Protocol violations seen, each followed by a fresh subscription. */
  readonly restarts: number;
  /** Of those, the digests that differed (the list had diverged). */
  readonly digestMismatches: number;
  /** Reconnects that kept the list: a state-diff resume (window mode; WebSocket and SSE)
   * or a log-position resume (changes mode; WebSocket only): its ops, then `synced`. */
  readonly resumes: number;
  /** Reconnects that declared the list (or named its pos) but got `reset` (reason
   * `resume_miss`). */
  readonly resumeMisses: number;
  /** Seconds between `check` messages asked for, or null. */
  readonly check: number | null;
  /** The reason of the last `reset` ("" before any). */
  readonly resetReason: string;
  /** The last error about this view. */
  readonly error: LiveError | null;
  readonly ended: boolean;
  on<E extends keyof ViewEvents>(event: E, listener: ViewEvents[E]): () => void;
  off<E extends keyof ViewEvents>(event: E, listener: ViewEvents[E]): void;
  /** Window mode: start the window after `after` (null: the top), with a new `limit`. */
  reanchor(after: string | null, limit?: number): void;
  /** Stop following the query; the status becomes `offline`. */
  unsubscribe(): void;
  /** Resolves once `rows` is synced; rejects with the refusal, or `Unavailable` past the timeout. */
  whenSynced(timeoutMs?: number): Promise<LiveView>;
}

export interface WriteResult {
  id: string;
  version: number;
}

export interface QueryPage {
  rows: Row[];
  /** The last row's cursor when more rows follow, else null. */
  next: string | null;
}

export type BatchOp =
  | { op: "put"; entity: string; id: string; row: Values; ttl?: number }
  | { op: "patch"; entity: string; id: string; row: Values }
  | { op: "delete"; entity: string; id: string };

export type BatchResult =
  | { status: 200; id: string; version: number }
  | { status: number; error: { code: string; message: string; version?: number | null } };

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export interface ConnectOptions {
  /** The gateway, `http(s)://host:port` (default: the page's origin). */
  url?: string;
  /** A fixed token (never put in a URL). Give this or `getToken`. */
  token?: string;
  /** Asked at every connect, before the current token's `exp`, and once after a refusal;
   * it should cache its token. */
  getToken?: () => string | Promise<string>;
  /** `auto` (default): WebSocket, and SSE when a WebSocket cannot open but HTTP answers. */
  transport?: "auto" | "ws" | "sse";
  /** A WebSocket constructor (default `globalThis.WebSocket`; Node 20 has none). */
  WebSocket?: unknown;
  /** An EventSource constructor (default `globalThis.EventSource`). */
  EventSource?: unknown;
  /** A fetch function (default `globalThis.fetch`). */
  fetch?: (input: string, init?: object) => Promise<unknown>;
  backoff?: Backoff | BackoffOptions;
  /** Milliseconds a WebSocket may take to say `ready` (default 5000). */
  connectTimeout?: number;
  /** Milliseconds between pings; a connection silent for a whole interval is dropped (20000). */
  heartbeat?: number;
  /**
   * SSE: the longest stream URL, in bytes, that may carry a view's list for a state-diff
   * resume on reconnect; a longer URL leaves the list out (a snapshot). Default 8192.
   */
  sseUrlLimit?: number;
  /** For tests: the source of jitter (default Math.random). */
  random?: () => number;
  /** For tests: the clock and timers (default Date.now, setTimeout, clearTimeout). */
  clock?: Clock;
}

/** Live views and the data API of one lq gateway. */
export class LiveClient {
  constructor(options: ConnectOptions);
  readonly status: Status;
  /** The transport in use now. */
  readonly transport: "ws" | "sse";
  /** The last connection-level error. */
  readonly error: LiveError | null;
  /** The views that have not ended. */
  readonly views: LiveView[];
  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void;
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): void;
  /** Follow a query live; the view is returned at once and fills in. */
  subscribe(query: Query, options?: SubscribeOptions): LiveView;
  /** Close the connection and end every view. */
  close(): void;
  /** The row, or null when there is none. */
  get(entity: string, id: string): Promise<{ id: string; version: number; row: Values } | null>;
  put(entity: string, id: string, row: Values,
      options?: { ifMatch?: number; createOnly?: boolean; ttl?: number }): Promise<WriteResult>;
  /** A JSON merge patch (RFC 7396); `NotFound` when the row is absent. */
  patch(entity: string, id: string, patch: Values, options?: { ifMatch?: number }): Promise<WriteResult>;
  delete(entity: string, id: string, options?: { ifMatch?: number }): Promise<WriteResult>;
  /** One page of a query. */
  query(entity: string, query?: { where?: Query["where"]; sort?: string[]; limit?: number;
                                  after?: string | null }): Promise<QueryPage>;
  /** Several writes in one request, not atomic: one result per op, in order. */
  batch(ops: BatchOp[]): Promise<BatchResult[]>;
}

/** Connect to an lq gateway. */
export function connect(options: ConnectOptions): LiveClient;
