//! The conservation checks of a dreamnet-bus run: every event and every delivery
//! accounted for, from the bus's own counters against loadgen's (the producers' tally,
//! the handlers' probes, the dead-letter hook). Each step checks one stage of the path;
//! a failing check fails the run (exit status 2).

use dreamnet_bus::{BusStats, SubscriptionStats};

use crate::report::{Check, Failures, RunReport};
use crate::workload::SUBSCRIPTIONS;

/// All the checks, stage by stage: publishing, deliveries, their outcomes, retries, then
/// the failure paths (fails, panics, dead letters, the ring, the wheels).
pub fn check(report: &mut RunReport, s: &BusStats, f: &Failures, panics_injected: bool) {
    publishing(report, s);
    let subs = subscription_totals(report);
    deliveries(report, s, &subs);
    outcomes(report, f, &subs);
    retries(report, f, &subs);
    failure_paths(report, s, f, &subs, panics_injected);
}

/// The bus's counts summed over the subscriptions that reported them.
struct SubscriptionTotals {
    /// How many subscriptions reported counts.
    reported: usize,
    accepted: u64,
    attempts: u64,
    done: u64,
    dead_lettered: u64,
    retried: u64,
    panicked: u64,
}

fn subscription_totals(report: &RunReport) -> SubscriptionTotals {
    let subs: Vec<&SubscriptionStats> = report
        .endpoints
        .iter()
        .filter_map(|e| e.bus.as_ref())
        .collect();
    let total = |g: fn(&SubscriptionStats) -> u64| subs.iter().map(|b| g(b)).sum::<u64>();
    SubscriptionTotals {
        reported: subs.len(),
        accepted: total(|b| b.accepted),
        attempts: total(|b| b.attempts),
        done: total(|b| b.done),
        dead_lettered: total(|b| b.dead_lettered),
        retried: total(|b| b.retried),
        panicked: total(|b| b.panicked),
    }
}

/// Publishing: every attempt accepted or refused with the event handed back; the bus
/// agrees; every ring entry dispatched or still queued.
fn publishing(report: &mut RunReport, s: &BusStats) {
    let t = &report.tally;
    let accepted = t.total();
    report.checks.push(Check::eq(
        format!(
            "publish attempts {} = accepted {} + rejected with an error {} (full {}, closed {}; each refusal handed the event back and it was retried, not lost)",
            t.attempts,
            accepted,
            t.full + t.closed,
            t.full,
            t.closed
        ),
        t.attempts,
        accepted + t.full + t.closed,
    ));
    report.checks.push(Check::eq(
        format!(
            "bus-wide: publish attempts {} = bus published {} + bus rejected {} (full {}, closed {}, invalid {})",
            t.attempts,
            s.published,
            s.rejected(),
            s.rejected_full,
            s.rejected_closed,
            s.rejected_invalid,
        ),
        t.attempts,
        s.published + s.rejected(),
    ));
    report.checks.push(Check::eq(
        format!(
            "bus published {} = loadgen accepted {}",
            s.published, accepted
        ),
        s.published,
        accepted,
    ));
    let entries: u64 = s
        .shards
        .iter()
        .map(|x| x.published.iter().sum::<u64>())
        .sum();
    let dispatched: u64 = s
        .shards
        .iter()
        .map(|x| x.dispatched.iter().sum::<u64>())
        .sum();
    report.checks.push(Check::eq(
        format!(
            "published {} = routed to >=1 shard {} + unroutable {}; ring entries {} over {} shard(s) = dispatched {} + still queued {}",
            s.published,
            s.published - s.unroutable,
            s.unroutable,
            entries,
            s.shards.len(),
            dispatched,
            s.queued()
        ),
        entries,
        dispatched + s.queued(),
    ));
}

/// Deliveries: first deliveries against the routing model, and handler calls (retries
/// included) counted three ways.
fn deliveries(report: &mut RunReport, s: &BusStats, subs: &SubscriptionTotals) {
    let t = &report.tally;
    let first: u64 = report.endpoints.iter().map(|e| e.delivered).sum();
    let calls: u64 = report.endpoints.iter().map(|e| e.calls).sum();
    let expected: u64 = SUBSCRIPTIONS.iter().map(|spec| t.expected(spec)).sum();
    let bus_accepted: u64 = report.endpoints.iter().filter_map(|e| e.bus_accepted).sum();
    report.checks.push(Check::same(
        format!(
            "first deliveries: subscriptions accepted {} = handlers' first attempts {} = routing model {}",
            bus_accepted, first, expected
        ),
        &[bus_accepted, first, expected],
    ));
    report.checks.push(Check::same(
        format!(
            "handler calls (retries included): bus delivered {} = subscriptions' attempts {} = handlers counted {}",
            s.delivered(),
            subs.attempts,
            calls
        ),
        &[s.delivered(), subs.attempts, calls],
    ));
}

/// Per subscription, every accepted delivery ended: accepted = done + dead-lettered by the
/// bus's counters (at quiescence), and = done + the letters the hook saw (after close);
/// and done agrees with what the handlers returned.
fn outcomes(report: &mut RunReport, f: &Failures, subs: &SubscriptionTotals) {
    let bad_rows = report
        .endpoints
        .iter()
        .filter(|e| {
            e.bus
                .as_ref()
                .is_some_and(|b| b.accepted != b.done + b.dead_lettered)
        })
        .count() as u64;
    report.checks.push(Check::eq(
        format!(
            "per subscription {}, accepted = done + dead-lettered (bus counters): {} of {} subscriptions hold; in sum {} = {} + {}",
            if f.idle {
                "at quiescence (before close)"
            } else {
                "after close (the bus never went idle)"
            },
            subs.reported as u64 - bad_rows,
            subs.reported,
            subs.accepted,
            subs.done,
            subs.dead_lettered
        ),
        bad_rows,
        0,
    ));
    let bad_after = report
        .endpoints
        .iter()
        .filter(|e| match (&e.bus, e.dead_letters_seen) {
            (Some(b), Some(n)) => b.accepted != b.done + n,
            _ => false,
        })
        .count();
    report.checks.push(Check::eq(
        format!(
            "per subscription after close, accepted = done + dead letters seen by the hook (shutdown included): {} of {} hold; in sum {} = {} + {}",
            subs.reported - bad_after,
            subs.reported,
            subs.accepted,
            subs.done,
            dead_letters_seen(report)
        ),
        bad_after as u64,
        0,
    ));
    let r = &f.returned;
    report.checks.push(Check::same(
        format!(
            "done: handlers returned {} = subscriptions counted {}",
            r.done, subs.done
        ),
        &[r.done, subs.done],
    ));
}

/// Dead letters the hook attributed to one of the run's subscriptions.
fn dead_letters_seen(report: &RunReport) -> u64 {
    report
        .endpoints
        .iter()
        .filter_map(|e| e.dead_letters_seen)
        .sum()
}

/// Retries: what handlers asked for against what the shards scheduled, fired, or
/// dead-lettered.
fn retries(report: &mut RunReport, f: &Failures, subs: &SubscriptionTotals) {
    let r = &f.returned;
    let retried = subs.retried;
    let (exhausted, capacity, deadline) = (
        f.dead("retries-exhausted"),
        f.dead("retry-capacity"),
        f.dead("deadline-exceeded"),
    );
    report.checks.push(Check::eq(
        format!(
            "retry returned {} = scheduled {} (subscriptions: {}) + retries-exhausted {} + retry-capacity {} + deadline-exceeded {}",
            r.retry, f.retries_scheduled, retried, exhausted, capacity, deadline
        ),
        r.retry,
        f.retries_scheduled + exhausted + capacity + deadline,
    ));
    report.checks.push(Check::eq(
        format!(
            "retries scheduled {} = fired {} + dead-lettered on close (shutdown) {} + still on the wheels {}",
            f.retries_scheduled,
            f.retries_fired,
            f.dead("shutdown"),
            f.timers_pending
        ),
        f.retries_scheduled,
        f.retries_fired + f.dead("shutdown") + f.timers_pending,
    ));
    report.checks.push(Check::same(
        format!(
            "retries scheduled: shards {} = subscriptions {}",
            f.retries_scheduled, retried
        ),
        &[f.retries_scheduled, retried],
    ));
}

/// The failure paths: fails, panics (counted four or five ways), dead letters, the ring,
/// and the wheels empty after close.
fn failure_paths(
    report: &mut RunReport,
    s: &BusStats,
    f: &Failures,
    subs: &SubscriptionTotals,
    panics_injected: bool,
) {
    let r = &f.returned;
    report.checks.push(Check::same(
        format!(
            "fail returned {} = dead letters failed {}",
            r.fail,
            f.dead("failed")
        ),
        &[r.fail, f.dead("failed")],
    ));
    let sub_panics = subs.panicked;
    let mut panics = vec![r.panicked, f.panics_caught, sub_panics, f.dead("panicked")];
    if panics_injected {
        panics.push(f.panics_hooked);
    }
    report.checks.push(Check::same(
        format!(
            "panics: handlers {} = shards caught {} = subscriptions {} = dead letters panicked {}{}",
            r.panicked,
            f.panics_caught,
            sub_panics,
            f.dead("panicked"),
            if panics_injected {
                format!(" = quiet panic hook {}", f.panics_hooked)
            } else {
                String::new()
            }
        ),
        &panics,
    ));
    let seen = dead_letters_seen(report);
    report.checks.push(Check::same(
        format!(
            "dead letters: hook saw {} = shards counted {} = subscriptions' share {} + letters without one {}",
            f.dead_total(),
            f.dead_lettered,
            seen,
            f.dead_total() - seen.min(f.dead_total())
        ),
        &[f.dead_total(), f.dead_lettered],
    ));
    report.checks.push(Check::eq(
        format!(
            "dead-letter ring: recorded {} = held {} + dropped by the full policy {} (bus stats dropped {}; nothing drained)",
            f.dead_total(),
            f.ring_len,
            f.ring_dropped,
            s.dead_letters_dropped
        ),
        f.dead_total(),
        f.ring_len as u64 + f.ring_dropped,
    ));
    report.checks.push(Check::eq(
        format!(
            "timer wheels empty after close: {} pending",
            f.timers_pending
        ),
        f.timers_pending,
        0,
    ));
}
