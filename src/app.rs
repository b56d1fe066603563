//! The shared state of a running daemon: the current config and the providers
//! built from it (swapped whole on SIGHUP), the store, and the counters behind
//! `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::Config;
use crate::outbound::HttpClient;
use crate::provider::{Following, Providers};
use crate::store::Store;

/// One config and what was built from it. Requests take an `Arc` of it at their
/// start and keep it to their end, so a reload never changes a request midway.
pub struct Runtime {
    pub config: Config,
    pub providers: Providers,
}

impl Runtime {
    /// `following` outlives runtimes: calls a provider follows stay followed
    /// across a reload. So does `client`, with its pool and its trust roots.
    pub fn new(config: Config, following: &Arc<Following>, client: &HttpClient) -> Self {
        let providers = Providers::build(&config, following, client, None);
        Runtime { config, providers }
    }

    /// The runtime of a reloaded `config`: providers whose settings did not
    /// change are kept as they are (an AMI manager stays logged in, its calls'
    /// channels known), and every provider keeps its breaker and counters.
    pub fn reload(
        config: Config,
        following: &Arc<Following>,
        client: &HttpClient,
        previous: &Runtime,
    ) -> Self {
        let providers = Providers::build(&config, following, client, Some(&previous.providers));
        Runtime { config, providers }
    }
}

pub struct App {
    runtime: RwLock<Arc<Runtime>>,
    pub store: Store,
    pub metrics: Metrics,
    /// Dialect requests under way; a stop waits for them.
    pub inflight: Arc<Inflight>,
    /// The calls providers are following now (see [`Following`]).
    pub following: Arc<Following>,
    /// The outgoing HTTP client of upstreams and callbacks, made once at start
    /// so the trust store is read once and connections are reused across reloads.
    pub client: HttpClient,
    /// Where each round-robin pool starts its next call.
    pub rotation: Rotation,
    /// What the guard rails keep in memory: the partners' `max_rate`
    /// buckets, the blocklist's shapes.
    pub guard: Arc<crate::guard::Kept>,
    /// Failed authentications, per source and partner.
    pub lockout: crate::lockout::Lockout,
    /// Woken when a call is deferred, so the scheduler sees its start.
    pub scheduled: tokio::sync::Notify,
    /// Counts runtimes swapped in, for tasks that follow the providers.
    reloads: tokio::sync::watch::Sender<u64>,
}

/// Round robin's memory: for each pool of participants (by their numbers), the
/// index its next call starts at. Kept in memory: after a restart every pool
/// starts at its first participant again.
#[derive(Default)]
pub struct Rotation {
    next: Mutex<HashMap<Vec<String>, usize>>,
}

/// Pools remembered at most; past this the memory starts over.
const ROTATION_POOLS: usize = 10_000;

impl Rotation {
    /// Sets where each round-robin side of `plan` starts, moving its pool on.
    pub fn assign(&self, plan: &mut crate::core::plan::CallPlan) {
        for side in [&mut plan.a, &mut plan.b] {
            if side.strategy == crate::core::plan::Strategy::RoundRobin {
                let pool: Vec<String> = side
                    .participants
                    .iter()
                    .map(|p| p.number.as_str().to_string())
                    .collect();
                side.start = self.take(&pool);
            }
        }
    }

    /// The start index for the next call to `pool`; moves the pool on by one.
    pub fn take(&self, pool: &[String]) -> usize {
        let Ok(mut next) = self.next.lock() else {
            return 0;
        };
        if next.len() >= ROTATION_POOLS && !next.contains_key(pool) {
            next.clear();
        }
        let slot = next.entry(pool.to_vec()).or_insert(0);
        let start = *slot;
        *slot = slot.wrapping_add(1);
        start
    }
}

impl App {
    /// An app on `config_text` (TOML) with its store open, for unit tests.
    #[cfg(test)]
    pub fn for_test(config_text: &str) -> App {
        let config =
            crate::config::parse(config_text, crate::config::Source::File("t.toml".into()))
                .unwrap();
        let store = Store::open(&config.database).unwrap();
        let following = Arc::new(Following::default());
        let client = crate::outbound::client(rustls::RootCertStore::empty()).unwrap();
        App::new(
            Runtime::new(config, &following, &client),
            store,
            following,
            client,
        )
    }

    pub fn new(
        runtime: Runtime,
        store: Store,
        following: Arc<Following>,
        client: HttpClient,
    ) -> Self {
        App {
            following,
            client,
            runtime: RwLock::new(Arc::new(runtime)),
            store,
            metrics: Metrics::default(),
            inflight: Arc::new(Inflight::default()),
            rotation: Rotation::default(),
            guard: Arc::default(),
            lockout: crate::lockout::Lockout::default(),
            scheduled: tokio::sync::Notify::new(),
            reloads: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes each time a reload swaps in a new runtime.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// The current runtime.
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new runtime; requests under way keep the old one.
    pub fn replace(&self, runtime: Runtime) {
        let new = Arc::new(runtime);
        match self.runtime.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        self.reloads.send_modify(|n| *n += 1);
    }
}

/// Counts the requests under way, so that a stop can wait for them.
#[derive(Default)]
pub struct Inflight {
    count: AtomicU64,
    idle: tokio::sync::Notify,
}

/// One request under way; dropping it ends it.
pub struct InflightGuard(Arc<Inflight>);

impl Inflight {
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InflightGuard(self.clone())
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once no request is under way.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Answers by (route, HTTP status).
    responses: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Requests the guard rails stopped, by rule.
    stops: Mutex<BTreeMap<&'static str, u64>>,
    /// Callback attempts under way now.
    pub callbacks_attempting: AtomicU64,
    /// Callback attempts by outcome: delivered, failed (to be retried), given up.
    pub callbacks_delivered: AtomicU64,
    pub callbacks_failed: AtomicU64,
    pub callbacks_dead: AtomicU64,
}

impl Metrics {
    pub fn response(&self, route: &'static str, status: u16) {
        if let Ok(mut m) = self.responses.lock() {
            *m.entry((route, status)).or_default() += 1;
        }
    }

    pub fn stop(&self, rule: &'static str) {
        if let Ok(mut m) = self.stops.lock() {
            *m.entry(rule).or_default() += 1;
        }
    }

    pub fn stops(&self) -> Vec<(&'static str, u64)> {
        match self.stops.lock() {
            Ok(m) => m.iter().map(|(k, v)| (*k, *v)).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn responses(&self) -> Vec<((&'static str, u16), u64)> {
        match self.responses.lock() {
            Ok(m) => m.iter().map(|(k, v)| (*k, *v)).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
