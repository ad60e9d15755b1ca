//! Backoff policies: how long a reconnecting client waits before each retry.
//!
//! A [`Backoff`] is a pure policy: given the retry number (and, for a compounding
//! policy, the previous delay) and a random source, it returns the delay. A
//! [`Delays`] walks one policy's sequence with its own [`Rng`]: what a
//! [`ClientService`](crate::client::ClientService) keeps between retries, reset once a
//! connection is made. There are two presets:
//!
//! - [`Backoff::client_service`], the default: Twisted's `ClientService` policy
//!   (`backoffPolicy()`): `min(initial × factor^attempt, max) + jitter`, with initial
//!   1 s, factor 1.5, max 60 s and a jitter drawn uniformly from [0, 1 s).
//! - [`Backoff::reconnecting_client_factory`]: Twisted's `ReconnectingClientFactory`:
//!   initial 1 s, factor e, max 3600 s, a Gaussian jitter whose standard deviation is
//!   0.119626565582 × the delay, the jittered delay stored back so that the next one
//!   grows from it.
//!
//! What every policy guarantees, whatever its settings and its random source:
//!
//! - **The first retry waits `initial`** (plus its jitter), the second `initial ×
//!   factor`, and so on. Twisted's `ReconnectingClientFactory` waited `initial ×
//!   factor` before the first retry until 2025 (twisted #12478); its `ClientService`
//!   still asks its policy for attempt 1 first, so its first retry waits 1.5 s plus
//!   jitter. Here retry 0 is the first.
//! - **A delay is never negative and never over `max`.** Twisted's Gaussian jitter can
//!   make a delay negative or push it past `maxDelay` (twisted #4734, #8714), and its
//!   `ClientService` adds its jitter after the cap. Here a jittered delay outside
//!   [0, max] is folded back into it (a reflection at the bound, so that the delays
//!   of clients that all reached the cap keep their spread instead of all becoming
//!   exactly `max`), and then clamped.
//! - **Exact under test.** The jitter comes from an [`Rng`] the caller owns;
//!   [`Rng::seeded`] makes a sequence reproducible, and [`Jitter::None`] makes it
//!   exact (the `ReconnectingClientFactory` preset then gives 1, e, e², … up to 3600).
//!
//! Resetting after a good connection is the client's part (a `ClientService` does it
//! by itself, see [`ClientServiceBuilder::reset_after`]); forgetting it is the classic
//! bug of `ReconnectingClientFactory` users (graphite-carbon #102/#110, pymodbus
//! #266), whose delay then stays at its maximum for ever.
//!
//! [`ClientServiceBuilder::reset_after`]: crate::client::ClientServiceBuilder::reset_after

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Twisted `ReconnectingClientFactory.jitter`: the standard deviation of its Gaussian
/// jitter as a fraction of the delay (the molar Planck constant times c, in J·m/mol;
/// kept for fidelity, not for any property of the number).
pub const TWISTED_RCF_JITTER: f64 = 0.119626565582;

/// How a delay is randomised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// No randomness: the sequence is exact.
    None,
    /// Adds a value drawn uniformly from [0, d) (Twisted `ClientService`'s
    /// `random.random()` seconds, with d = 1 s).
    Uniform(Duration),
    /// Draws the delay from a normal distribution centred on it, with standard
    /// deviation `fraction × delay` (Twisted `ReconnectingClientFactory`'s
    /// `random.normalvariate(delay, delay * jitter)`).
    Gaussian(f64),
}

/// How the delay grows from one retry to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// `min(initial × factor^attempt, max)`, then the jitter: each delay depends only
    /// on its retry number (Twisted `ClientService`).
    Exponential,
    /// `min(previous × factor, max)`, then the jitter, where `previous` is the last
    /// delay as jittered: the jitter compounds (Twisted `ReconnectingClientFactory`).
    Compounding,
}

/// A backoff policy: the delay before each retry, and how many retries are allowed.
/// See the [module docs](self) for the guarantees.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use twistor::backoff::{Backoff, Jitter, Rng};
///
/// // Twisted's ReconnectingClientFactory, without its jitter: 1, e, e², ...
/// let policy = Backoff::reconnecting_client_factory().jitter(Jitter::None);
/// let secs: Vec<f64> = policy
///     .delays(Rng::seeded(7))
///     .take(3)
///     .map(|d| d.as_secs_f64())
///     .collect();
/// assert_eq!(secs[0], 1.0);
/// assert!((secs[1] - std::f64::consts::E).abs() < 1e-9);
///
/// // The default, with its jitter, from a seeded source: reproducible, and bounded.
/// let policy = Backoff::client_service().max(Duration::from_secs(5));
/// let a: Vec<Duration> = policy.delays(Rng::seeded(1)).take(10).collect();
/// let b: Vec<Duration> = policy.delays(Rng::seeded(1)).take(10).collect();
/// assert_eq!(a, b);
/// assert!(a.iter().all(|d| *d <= Duration::from_secs(5)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    jitter: Jitter,
    growth: Growth,
    max_retries: Option<u32>,
}

impl Default for Backoff {
    /// [`Backoff::client_service`].
    fn default() -> Self {
        Backoff::client_service()
    }
}

impl Backoff {
    /// Twisted `ClientService`'s policy (`backoffPolicy()`): initial 1 s, factor 1.5,
    /// max 60 s, uniform jitter in [0, 1 s), no limit on retries. Retry 0 waits
    /// 1 s + jitter (see the [module docs](self) on where Twisted differs).
    pub fn client_service() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            factor: 1.5,
            max: Duration::from_secs(60),
            jitter: Jitter::Uniform(Duration::from_secs(1)),
            growth: Growth::Exponential,
            max_retries: None,
        }
    }

    /// Twisted `ReconnectingClientFactory`'s policy, as it computes it since the 2025
    /// fix for the first delay (twisted #12478): initial 1 s, factor e, max 3600 s,
    /// Gaussian jitter [`TWISTED_RCF_JITTER`], compounding, no limit on retries (its
    /// `maxRetries` is [`max_retries`](Self::max_retries)). Unlike Twisted, a delay is
    /// kept within [0, max].
    pub fn reconnecting_client_factory() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            factor: std::f64::consts::E,
            max: Duration::from_secs(3600),
            jitter: Jitter::Gaussian(TWISTED_RCF_JITTER),
            growth: Growth::Compounding,
            max_retries: None,
        }
    }

    /// A fixed delay: every retry waits `delay`, with no jitter.
    pub fn constant(delay: Duration) -> Backoff {
        Backoff {
            initial: delay,
            factor: 1.0,
            max: delay,
            jitter: Jitter::None,
            growth: Growth::Exponential,
            max_retries: None,
        }
    }

    /// The delay before the first retry (before jitter). Taken as at most
    /// [`max`](Self::max).
    pub fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// How much each delay grows over the one before. A factor below 1, or one that
    /// is not a number, is taken as 1 (delays never shrink).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The longest delay, jitter included.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// How delays are randomised. A negative or non-finite Gaussian fraction is taken
    /// as no jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// How delays grow (the presets set it).
    pub fn growth(mut self, growth: Growth) -> Self {
        self.growth = growth;
        self
    }

    /// The most retries in a row without a connection, after which the client gives
    /// up (Twisted `ReconnectingClientFactory.maxRetries`: with `Some(n)`, `n` retries
    /// are made after the first attempt, so `n + 1` attempts in all); `None`, the
    /// default, retries for ever.
    pub fn max_retries(mut self, max_retries: Option<u32>) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// The retry limit set with [`max_retries`](Self::max_retries).
    pub fn retry_limit(&self) -> Option<u32> {
        self.max_retries
    }

    /// The largest delay this policy returns.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// The delay before retry number `attempt` (0 is the first retry), within
    /// [0, max]. `previous` is the delay returned for the retry before, which a
    /// [`Growth::Compounding`] policy grows from (without it, it grows from
    /// `initial` as an exponential one does). Draws at most two numbers from `rng`.
    pub fn delay(&self, attempt: u32, previous: Option<Duration>, rng: &mut Rng) -> Duration {
        let max = self.max.as_secs_f64();
        let initial = self.initial.as_secs_f64().min(max);
        let factor = if self.factor >= 1.0 { self.factor } else { 1.0 };
        let base = match (self.growth, previous) {
            _ if attempt == 0 => initial,
            (Growth::Compounding, Some(previous)) => (previous.as_secs_f64() * factor).min(max),
            // `powf` saturates to infinity, which the cap takes care of.
            _ => (initial * factor.powf(attempt as f64)).min(max),
        };
        let jittered = match self.jitter {
            Jitter::None => base,
            Jitter::Uniform(d) => base + rng.next_f64() * d.as_secs_f64(),
            Jitter::Gaussian(fraction) if fraction > 0.0 && fraction.is_finite() => {
                base + rng.next_gaussian() * base * fraction
            }
            Jitter::Gaussian(_) => base,
        };
        Duration::from_secs_f64(fold(jittered, max))
    }

    /// The sequence of delays this policy gives from retry 0, drawing its jitter from
    /// `rng`; it ends after [`max_retries`](Self::max_retries) delays, if set.
    pub fn delays(&self, rng: Rng) -> Delays {
        Delays {
            policy: self.clone(),
            rng,
            attempt: 0,
            previous: None,
        }
    }
}

/// Brings `x` into [0, max]: a value past a bound is reflected at it (so jitter at
/// the cap keeps its spread), and whatever is still outside (a reflection past the
/// other bound, a value that is not a number) is clamped.
fn fold(x: f64, max: f64) -> f64 {
    if x.is_nan() {
        return max;
    }
    let x = if x > max {
        2.0 * max - x
    } else if x < 0.0 {
        -x
    } else {
        x
    };
    x.clamp(0.0, max)
}

/// A policy's sequence of delays, with its random source and where it is; see
/// [`Backoff::delays`].
///
/// A [`ClientService`](crate::client::ClientService) keeps one: each retry takes the
/// next delay, and a connection that is made (or has stayed up long enough)
/// [`reset`](Self::reset)s it.
#[derive(Clone, Debug)]
pub struct Delays {
    policy: Backoff,
    rng: Rng,
    attempt: u32,
    previous: Option<Duration>,
}

impl Delays {
    /// Back to retry 0: the next delay is the initial one again (Twisted's
    /// `resetDelay`). The random source goes on.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = None;
    }

    /// Retries taken since the last reset.
    pub fn retries(&self) -> u32 {
        self.attempt
    }

    /// The policy.
    pub fn policy(&self) -> &Backoff {
        &self.policy
    }
}

impl Iterator for Delays {
    type Item = Duration;

    /// The next delay, or `None` once the policy's retries are spent.
    fn next(&mut self) -> Option<Duration> {
        if self.policy.max_retries.is_some_and(|n| self.attempt >= n) {
            return None;
        }
        let delay = self
            .policy
            .delay(self.attempt, self.previous, &mut self.rng);
        self.attempt = self.attempt.saturating_add(1);
        self.previous = Some(delay);
        Some(delay)
    }
}

/// A small, seedable pseudo-random source for jitter: SplitMix64 (Steele, Lea and
/// Flood, 2014), with normal deviates by the Box–Muller transform.
///
/// Not for anything that must be unpredictable: jitter only spreads clients apart.
/// [`Rng::seeded`] gives the same numbers on every platform, so a test can assert
/// exact delays; [`Rng::from_entropy`] seeds from the clock, the process id and a
/// per-process counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A source that always gives the same numbers for the same seed.
    pub fn seeded(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A source seeded from the clock, the process id and a counter, so that clients
    /// started together (in one process or in several) draw different jitter.
    pub fn from_entropy() -> Rng {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut mix = Rng::seeded(nanos ^ ((std::process::id() as u64) << 32));
        Rng::seeded(mix.next_u64() ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number drawn uniformly from [0, 1), with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal deviate (mean 0, standard deviation 1), by Box–Muller from
    /// two uniform draws (the second of the pair is not kept, so each call draws
    /// twice and the sequence depends only on the seed and the number of calls).
    pub fn next_gaussian(&mut self) -> f64 {
        // 1 - u is in (0, 1]: the logarithm stays finite.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // The first outputs of SplitMix64 seeded with 0 (the reference C code).
        let mut rng = Rng::seeded(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn uniform_draws_are_in_the_unit_interval() {
        let mut rng = Rng::seeded(42);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn gaussian_draws_have_roughly_unit_spread() {
        let mut rng = Rng::seeded(3);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.next_gaussian()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn fold_reflects_then_clamps() {
        assert_eq!(fold(5.0, 10.0), 5.0);
        assert_eq!(fold(12.0, 10.0), 8.0);
        assert_eq!(fold(-3.0, 10.0), 3.0);
        assert_eq!(fold(25.0, 10.0), 0.0);
        assert_eq!(fold(-25.0, 10.0), 10.0);
        assert_eq!(fold(f64::NAN, 10.0), 10.0);
        assert_eq!(fold(f64::INFINITY, 10.0), 0.0);
    }

    #[test]
    fn a_factor_below_one_is_taken_as_one() {
        let p = Backoff::client_service()
            .jitter(Jitter::None)
            .factor(0.5)
            .initial(Duration::from_secs(2));
        let d: Vec<f64> = p.delays(Rng::seeded(0)).take(3).map(secs).collect();
        assert_eq!(d, [2.0, 2.0, 2.0]);
    }

    #[test]
    fn an_initial_delay_over_the_max_is_capped() {
        let p = Backoff::constant(Duration::from_secs(1)).initial(Duration::from_secs(5));
        assert_eq!(
            p.delay(0, None, &mut Rng::seeded(0)),
            Duration::from_secs(1)
        );
    }
}
