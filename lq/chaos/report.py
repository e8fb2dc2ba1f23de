"""The table at the end of a chaos run, its recovery times, and its verdict.

Recovery of a fault: from its start to the last `synced` that follows a `reset` any
subscription got between the fault's start and the next fault's start (the time until
every list it disturbed was whole again); a fault that reset nothing has none.

Invariant: `failures(outcome)` is empty exactly when the run proves what it claims:
no divergence, gap, duplicate, stale delivery, over-long list or other protocol
violation on any subscription; no unexpected writer error or harness failure; every
list synced at the end; and, on standalone Redis with `appendfsync always`, no
acknowledged write lost. The exit status is 1 when it is not empty. A write answered
503 yet applied is reported on its own row: PROTOCOL.md section 7 says nothing was
written, which a timeout cannot know (see docs/reliability.md); so are writes answered
500. The writer reads both back, so they never make a list check wrong.
"""

from __future__ import annotations

from collections import Counter

from lq.bench._table import Row, print_table, quantile
from lq.chaos.check import KINDS, Anomaly
from lq.chaos.faults import FaultRecord
from lq.chaos.runner import Outcome

__all__ = ["failures", "measure_recovery", "print_report", "rows"]

_LABELS = {
    "divergence": "divergences (list != oracle)", "gap": "seq gaps without reset",
    "duplicate": "duplicate deliveries", "stale": "stale deliveries (version back)",
    "over_limit": "lists over their limit", "protocol": "other protocol violations",
}


def measure_recovery(out: Outcome) -> None:
    """Fill each record's `recovery` and `resets` from the subscriptions' histories."""
    records = sorted(out.records, key=lambda r: r.start)
    for i, rec in enumerate(records):
        until = records[i + 1].start if i + 1 < len(records) else float("inf")
        last: float | None = None
        rec.resets = rec.resumes = 0
        rec.reasons = Counter()
        for sub in out.subs:
            restarts = [t for t in sub.restarts if rec.start <= t < until]
            if not restarts:
                continue
            why = [r for t, r in zip(sub.resets, sub.reset_reasons, strict=True)
                   if rec.start <= t < until]
            if why:
                rec.resets += 1
                rec.reasons.update(why)
            else:
                rec.resumes += 1
            after = [t for t in sub.synced if t >= restarts[-1]]
            done = after[0] if after else float("inf")
            last = done if last is None else max(last, done)
        rec.recovery = None if last is None else last - rec.start


def _anomalies(out: Outcome) -> list[Anomaly]:
    return sorted((a for s in out.subs for a in s.anomalies), key=lambda a: a.t)


def failures(out: Outcome) -> list[str]:
    s = out.settings
    counts = Counter(a.kind for a in _anomalies(out))
    why = [f"{counts[k]} {_LABELS[k]}" for k in KINDS if counts[k]]
    w = out.writer
    if w is not None and w.stats.errors:
        why.append(f"{len(w.stats.errors)} writer errors")
    if w is not None and w.stats.applied_after_503:
        why.append(f"{len(w.stats.applied_after_503)} writes answered 503 (nothing written)"
                   " yet applied")
    why += [f"harness: {h}" for h in out.harness]
    if out.final is not None and not out.final.idle:
        why.append("the lists were not all synced and idle at the end")
    if out.final is not None and out.final.unready:
        why.append(out.final.unready)
    if s.redis == "standalone" and s.fsync == "always" and out.model.lost:
        why.append(f"{len(out.model.lost)} acknowledged writes lost with appendfsync always")
    return why


def _recovery_rows(records: list[FaultRecord]) -> list[Row]:
    out: list[Row] = []
    for kind in sorted({r.fault.kind for r in records}):
        mine = [r for r in records if r.fault.kind == kind]
        times = [r.recovery for r in mine if r.recovery is not None]
        value = (f"p50 {quantile(times, 0.5):.2f} s, p99 {quantile(times, 0.99):.2f} s"
                 if times else "no reset")
        lost = sum(r.lost for r in mine)
        note = f"{len(mine)} faults; {sum(r.resets for r in mine)} lists reset"
        reasons = sum((r.reasons for r in mine), Counter[str]())
        if reasons:
            note += " (" + ", ".join(f"{k} {n}" for k, n in reasons.most_common()) + ")"
        resumed = sum(r.resumes for r in mine)
        note += f", {resumed} only resumed" if resumed else ""
        note += f", {lost} acknowledged writes lost" if lost else ""
        out.append((f"recovery: {kind}", value, note))
    return out


def rows(out: Outcome) -> list[Row]:
    s, w, f = out.settings, out.writer, out.final
    assert w is not None
    measure_recovery(out)
    counts = Counter(a.kind for a in _anomalies(out))
    first = {a.kind: a for a in reversed(_anomalies(out))}
    kinds = Counter(r.fault.kind for r in out.records)
    lives = sum(sub.lives for sub in out.subs)
    table: list[Row] = [
        ("duration", f"{out.load_s:.0f} s load + {out.quiet_s:.0f} s quiet",
         f"seed {s.seed}, timings {s.timings}"),
        ("redis", f"{s.redis}, appendfsync {s.fsync}",
         "3 masters + 3 replicas" if s.redis == "cluster" else "AOF"),
        ("processes", f"{s.shards} shards, {s.gateways} gateways",
         f"{s.clients} clients over WebSocket, SSE and long polling"),
        ("writes acknowledged", f"{w.stats.acked:,}",
         f"{s.rate:g}/s asked; {w.stats.unknown} of unknown outcome read back "
         f"({w.stats.unknown_applied} applied); {w.stats.refused} refused (expired)"),
        ("messages delivered", f"{sum(sub.messages for sub in out.subs):,}",
         f"{sum(len(sub.resets) for sub in out.subs)} resets"),
        ("resumes (no snapshot)", str(sum(len(sub.resumes) for sub in out.subs)),
         f"of {sum(sub.declared for sub in out.subs)} reconnects that declared their list; "
         f"{sum(sub.misses for sub in out.subs)} answered resume_miss"),
        ("resets by reason", "", ", ".join(f"{k} {n}" for k, n in sum(
            (sub.reasons for sub in out.subs), Counter()).most_common())),
        ("faults", str(len(out.records)),
         ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))),
        ("subscriptions checked", str(len(out.subs)),
         f"{lives} lives; {out.snapshots} snapshots at synced; final "
         f"{f.model_checked if f else 0} vs model, {f.http_checked if f else 0} vs HTTP"),
    ]
    for kind in KINDS:
        note = first[kind].detail[:110] if kind in first else ""
        if kind == "stale" and f is not None and f.excused:
            note = (note + "; " if note else "") + f"{f.excused} excused by lost writes"
        table.append((_LABELS[kind], str(counts[kind]), note))
    lost = len(out.model.lost)
    notes = [f"{out.model.maybe_lost} maybe (a delete after a since-expired TTL)"
             if out.model.maybe_lost else "",
             f"{out.model.unacked_lost} unacknowledged (read back) too"
             if out.model.unacked_lost else ""]
    table.append(("acknowledged writes lost", str(lost), "; ".join(n for n in notes if n)))
    table.append(("writes answered 503 yet applied", str(len(w.stats.applied_after_503)),
                  f"not counted: {w.stats.outcome_unknown} 503s said the outcome was unknown"
                  if w.stats.outcome_unknown else ""))
    table.append(("writes answered 500", str(len(w.stats.internal)),
                  w.stats.internal[0][:110] if w.stats.internal else ""))
    table += _recovery_rows(out.records)
    why = failures(out)
    table.append(("verdict", "FAIL" if why else "PASS", "; ".join(why)[:160]))
    return table


def print_report(out: Outcome, say_lines: int = 20) -> None:
    print_table("lq chaos", rows(out), header=("measure", "value", "note"))
    anomalies = _anomalies(out)
    if anomalies:
        print(f"\nfirst {min(say_lines, len(anomalies))} of {len(anomalies)} anomalies:")
        for a in anomalies[:say_lines]:
            print(f"  {a.t:.3f} {a.kind:<10} {a.sub:<10} {a.detail[:300]}")
    for note in out.harness_notes[:say_lines]:
        print(f"  note: {note}")
    w = out.writer
    if w is not None:
        for line in (w.stats.errors + w.stats.applied_after_503
                     + w.stats.internal)[:say_lines]:
            print(f"  writer: {line[:300]}")
