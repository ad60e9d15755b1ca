//! Backoff policies: the exact sequences of both presets, the first delay, the retry
//! limit, and property tests for the bounds (never negative, never over the maximum).

use std::f64::consts::E;
use std::time::Duration;

use proptest::prelude::*;
use twistor::backoff::{Backoff, Growth, Jitter, Rng, TWISTED_RCF_JITTER};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Asserts that `got` (in seconds) matches `want` to within a microsecond per delay
/// (a `Duration` keeps nanoseconds, and a compounding policy grows from the rounded
/// previous delay).
fn check(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-6,
            "delay {i}: got {g}, want {w} ({got:?})"
        );
    }
}

fn first(policy: &Backoff, seed: u64, n: usize) -> Vec<f64> {
    policy.delays(Rng::seeded(seed)).take(n).map(secs).collect()
}

#[test]
fn reconnecting_client_factory_without_jitter_is_powers_of_e_capped_at_an_hour() {
    let policy = Backoff::reconnecting_client_factory().jitter(Jitter::None);
    let mut want: Vec<f64> = (0..9).map(|n| E.powi(n)).collect(); // e^8 ≈ 2981 s
    want.extend([3600.0, 3600.0, 3600.0]);
    check(&first(&policy, 0, 12), &want);
}

#[test]
fn client_service_without_jitter_is_powers_of_one_and_a_half_capped_at_a_minute() {
    let policy = Backoff::client_service().jitter(Jitter::None);
    let mut want: Vec<f64> = (0..11).map(|n| 1.5f64.powi(n)).collect(); // 1.5^10 ≈ 57.7 s
    want.extend([60.0, 60.0]);
    check(&first(&policy, 0, 13), &want);
}

/// Twisted #12478: the first retry waited initial × factor. Here it waits initial.
#[test]
fn the_first_retry_waits_the_initial_delay() {
    for policy in [
        Backoff::client_service(),
        Backoff::reconnecting_client_factory(),
    ] {
        let policy = policy
            .jitter(Jitter::None)
            .initial(Duration::from_millis(250));
        assert_eq!(
            policy.delays(Rng::seeded(9)).next(),
            Some(Duration::from_millis(250)),
            "{policy:?}"
        );
    }
}

/// The default policy with its jitter: `min(initial × 1.5^n, 60) + u`, u uniform in
/// [0, 1) from the seeded source, folded back under the cap.
#[test]
fn client_service_with_a_seeded_source_is_exact() {
    let policy = Backoff::client_service();
    let mut rng = Rng::seeded(2024);
    let want: Vec<f64> = (0..16)
        .map(|n| {
            let x = 1.5f64.powi(n).min(60.0) + rng.next_f64();
            if x > 60.0 {
                120.0 - x
            } else {
                x
            }
        })
        .collect();
    check(&first(&policy, 2024, 16), &want);
    // The same seed gives the same delays; another gives others.
    assert_eq!(first(&policy, 2024, 16), first(&policy, 2024, 16));
    assert_ne!(first(&policy, 2024, 16), first(&policy, 2025, 16));
}

/// Twisted's ReconnectingClientFactory with its Gaussian jitter: the jittered delay is
/// what the next one grows from.
#[test]
fn reconnecting_client_factory_with_a_seeded_source_compounds_its_jitter() {
    let policy = Backoff::reconnecting_client_factory();
    let mut rng = Rng::seeded(77);
    let mut want = Vec::new();
    let mut delay = 1.0f64;
    for n in 0..12 {
        if n > 0 {
            delay = (delay * E).min(3600.0);
        }
        delay += rng.next_gaussian() * delay * TWISTED_RCF_JITTER;
        delay = if delay > 3600.0 {
            7200.0 - delay
        } else {
            delay.abs()
        };
        want.push(delay);
    }
    check(&first(&policy, 77, 12), &want);
}

#[test]
fn max_retries_ends_the_sequence() {
    let policy = Backoff::reconnecting_client_factory()
        .jitter(Jitter::None)
        .max_retries(Some(3));
    check(&first(&policy, 0, 10), &[1.0, E, E * E]);
    let mut delays = policy.delays(Rng::seeded(0));
    assert_eq!(delays.by_ref().count(), 3);
    // A reset (a connection made) starts the sequence and its count again.
    delays.reset();
    assert_eq!(delays.next(), Some(Duration::from_secs(1)));
    assert_eq!(delays.retries(), 1);
}

#[test]
fn a_constant_policy_never_varies() {
    let policy = Backoff::constant(Duration::from_millis(20));
    check(&first(&policy, 5, 4), &[0.02; 4]);
}

/// A jitter wide enough to take Twisted's delays negative or past the cap (twisted
/// #4734, #8714) stays within [0, max] here, and keeps its spread at the cap.
#[test]
fn wide_jitter_stays_within_bounds_and_keeps_spreading_at_the_cap() {
    let max = Duration::from_secs(10);
    let policy = Backoff::reconnecting_client_factory()
        .jitter(Jitter::Gaussian(2.0))
        .max(max);
    let delays: Vec<Duration> = policy.delays(Rng::seeded(1)).take(500).collect();
    assert!(delays.iter().all(|d| *d <= max));
    let policy = Backoff::client_service().max(max); // additive jitter, added at the cap
    let at_cap: Vec<Duration> = policy.delays(Rng::seeded(1)).skip(20).take(50).collect();
    assert!(at_cap
        .iter()
        .all(|d| *d <= max && *d > max - Duration::from_secs(1)));
    assert!(at_cap.windows(2).any(|w| w[0] != w[1]), "{at_cap:?}");
}

fn any_jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        (0u64..10_000_000_000).prop_map(|ns| Jitter::Uniform(Duration::from_nanos(ns))),
        prop_oneof![
            -1.0f64..10.0,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(TWISTED_RCF_JITTER)
        ]
        .prop_map(Jitter::Gaussian),
    ]
}

fn any_policy() -> impl Strategy<Value = Backoff> {
    (
        0u64..100_000_000_000,
        prop_oneof![0.0f64..100.0, Just(f64::NAN), Just(f64::INFINITY), Just(E)],
        0u64..10_000_000_000_000,
        any_jitter(),
        prop_oneof![Just(Growth::Exponential), Just(Growth::Compounding)],
    )
        .prop_map(|(initial, factor, max, jitter, growth)| {
            Backoff::client_service()
                .initial(Duration::from_nanos(initial))
                .factor(factor)
                .max(Duration::from_nanos(max))
                .jitter(jitter)
                .growth(growth)
        })
}

proptest! {
    /// No delay is negative (a `Duration` cannot be: this checks that none panics on
    /// the way) or over the maximum, whatever the settings and the seed.
    #[test]
    fn delays_stay_within_zero_and_the_maximum(policy in any_policy(), seed in any::<u64>()) {
        let max = policy.max_delay();
        for d in policy.delays(Rng::seeded(seed)).take(200) {
            prop_assert!(d <= max, "{d:?} over {max:?}");
        }
    }

    /// Without jitter, delays never shrink and the first is the initial one (capped).
    #[test]
    fn without_jitter_delays_grow_from_the_initial_one(policy in any_policy(), seed in any::<u64>()) {
        let policy = policy.jitter(Jitter::None);
        let delays: Vec<Duration> = policy.delays(Rng::seeded(seed)).take(100).collect();
        prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        prop_assert!(delays[0] <= policy.max_delay());
    }

    /// `delay` for any attempt number, with any previous delay, is within bounds.
    #[test]
    fn any_attempt_is_within_bounds(
        policy in any_policy(),
        attempt in any::<u32>(),
        previous in proptest::option::of(0u64..u64::MAX),
        seed in any::<u64>(),
    ) {
        let previous = previous.map(Duration::from_nanos);
        let d = policy.delay(attempt, previous, &mut Rng::seeded(seed));
        prop_assert!(d <= policy.max_delay());
    }
}
