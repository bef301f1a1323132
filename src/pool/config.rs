//! How a pool is built: its settings, their defaults and bounds, and the
//! check that refuses a bad one, naming the setting, before anything is
//! allocated. No concurrency here: a [`Config`] is read once, by
//! [`Pool::new`](super::Pool::new).

use std::time::Duration;

use crate::budget::IdleBudget;
use crate::shards::default_shard_count;
use crate::sync::Arc;

/// The most idle objects a pool may be configured to keep. Idle storage is
/// allocated up front (about 32 bytes a slot), so a typo such as `10**9`
/// must fail cleanly instead of exhausting memory.
pub const MAX_IDLE_LIMIT: usize = 1 << 24;

/// The most shards a pool may be configured with.
pub const MAX_SHARDS: usize = 1024;

/// When an object is reset: as it comes back (idle objects hold no data), or
/// just before it is handed out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetOn {
    /// As it comes back (the default).
    Put,
    /// Just before it is handed out again.
    Get,
}

/// How a pool is built. `max_idle` of `None` keeps `max_size` idle objects in
/// a bounded pool (at most [`Config::DEFAULT_BOUNDED_MAX_IDLE`]) and
/// [`Config::DEFAULT_MAX_IDLE`] otherwise.
#[derive(Clone, Debug)]
pub struct Config {
    /// The most objects kept idle (see [`Config`] for `None`).
    pub max_idle: Option<usize>,
    /// The most objects in existence at once (`None`: unbounded); a `get`
    /// of a full pool waits.
    pub max_size: Option<usize>,
    /// Shards of idle storage (`None`: one per CPU).
    pub shards: Option<usize>,
    /// How long an object may stay idle before it is destroyed (`None`:
    /// for ever).
    pub idle_timeout: Option<Duration>,
    /// When objects are reset.
    pub reset_on: ResetOn,
    /// Track handed-out objects so that foreign and repeated returns are
    /// refused. Always on in a bounded pool.
    pub checked: bool,
    /// A budget that this pool's idle objects are charged against, shared
    /// with other pools (the byte cap of a block pool's size classes).
    pub charge: Option<Charge>,
    /// The fewest objects kept in existence (idle or handed out): made at
    /// once by the caller ([`Pool::refill`](super::Pool::refill)), and made
    /// again whenever the pool destroys objects below it.
    pub min_size: usize,
    /// How long an object may live, since it was created, before it is
    /// destroyed instead of handed out again or kept (`None`: for ever).
    /// Needs a checked pool: the creation time is kept beside the ledger.
    pub max_lifetime: Option<Duration>,
    /// The most callers that may wait at once for a full bounded pool; one
    /// more is refused at once (`None`: any number). Needs `max_size`.
    pub max_waiting: Option<usize>,
}

/// What each idle object of a pool costs against a shared [`IdleBudget`].
#[derive(Clone, Debug)]
pub struct Charge {
    /// The shared budget.
    pub budget: Arc<IdleBudget>,
    /// What one idle object costs.
    pub weight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_idle: None,
            max_size: None,
            shards: None,
            idle_timeout: None,
            reset_on: ResetOn::Put,
            checked: false,
            charge: None,
            min_size: 0,
            max_lifetime: None,
            max_waiting: None,
        }
    }
}

impl Config {
    /// Idle objects an unbounded pool keeps by default.
    pub const DEFAULT_MAX_IDLE: usize = 1024;
    /// A bounded pool keeps up to `max_size` objects idle, but no more than
    /// this by default: idle storage is allocated up front.
    pub const DEFAULT_BOUNDED_MAX_IDLE: usize = 65_536;
}

/// A configuration the pool refuses, naming the setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting refused.
    pub field: &'static str,
    /// Why, for a person.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn refuse(field: &'static str, message: String) -> ConfigError {
    ConfigError { field, message }
}

/// The effective `(max_idle, shards)` of `config`, or the setting it gets
/// wrong.
pub(super) fn resolve(config: &Config) -> Result<(usize, usize), ConfigError> {
    if let Some(0) = config.max_size {
        return Err(refuse(
            "max_size",
            "max_size must be at least 1, got 0".into(),
        ));
    }
    let max_idle = match (config.max_idle, config.max_size) {
        (Some(idle), Some(size)) => idle.min(size),
        (Some(idle), None) => idle,
        (None, Some(size)) => size.min(Config::DEFAULT_BOUNDED_MAX_IDLE),
        (None, None) => Config::DEFAULT_MAX_IDLE,
    };
    if max_idle > MAX_IDLE_LIMIT {
        return Err(refuse(
            "max_idle",
            format!("max_idle must be at most {MAX_IDLE_LIMIT}, got {max_idle}"),
        ));
    }
    let shards = config.shards.unwrap_or_else(default_shard_count);
    if shards == 0 || shards > MAX_SHARDS {
        return Err(refuse(
            "shards",
            format!("shards must be between 1 and {MAX_SHARDS}, got {shards}"),
        ));
    }
    for (field, value) in [
        ("idle_timeout", config.idle_timeout),
        ("max_lifetime", config.max_lifetime),
    ] {
        if value.is_some_and(|t| t.is_zero()) {
            return Err(refuse(field, format!("{field} must be positive, got 0")));
        }
    }
    check_sizes(config.min_size, config.max_size, max_idle)?;
    if config.max_lifetime.is_some() && !(config.checked || config.max_size.is_some()) {
        return Err(refuse(
            "max_lifetime",
            "max_lifetime needs a checked pool (checked=True): an unchecked pool keeps no \
             record of the objects it hands out, so it cannot tell their age"
                .into(),
        ));
    }
    if config.max_waiting.is_some() && config.max_size.is_none() {
        return Err(refuse(
            "max_waiting",
            "max_waiting needs max_size: a pool without max_size never makes a caller wait".into(),
        ));
    }
    Ok((max_idle, shards))
}

/// Refuses a `min_size` that `max_size` or the idle storage (`max_idle`,
/// fixed when the pool is built) cannot hold.
pub(super) fn check_sizes(
    min_size: usize,
    max_size: Option<usize>,
    max_idle: usize,
) -> Result<(), ConfigError> {
    if let Some(max) = max_size.filter(|&max| min_size > max) {
        return Err(refuse(
            "min_size",
            format!("min_size must be at most max_size ({max}), got {min_size}"),
        ));
    }
    if min_size > max_idle {
        return Err(refuse(
            "min_size",
            format!("min_size must be at most max_idle ({max_idle}), got {min_size}"),
        ));
    }
    Ok(())
}
