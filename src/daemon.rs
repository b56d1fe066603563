//! Wiring and lifecycle: open the database, sync partners, serve the listeners,
//! reload on SIGHUP, drain on SIGTERM, and tell systemd where we are.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::app::{App, Runtime};
use crate::config::{self, Config, Source};
use crate::core::now_ms;
use crate::provider::Following;
use crate::signal::Signal;
use crate::store::{calls, partners, Store};

/// Runs the daemon on already-bound `listeners` until a stop arrives on `control`.
/// The binary feeds `control` from the process's signals.
pub async fn run(
    config: Config,
    listeners: Vec<TcpListener>,
    mut control: mpsc::Receiver<Signal>,
) -> anyhow::Result<()> {
    let db = config.database.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&db))
        .await
        .context("while opening the database")?
        .with_context(|| {
            format!(
                "while opening the database {}",
                config.database.path.display()
            )
        })?;
    sync_partners(&store, &config)
        .await
        .context("while syncing partners into the database")?;
    // libphonenumber's metadata takes a tenth of a second or two to load: it
    // loads meanwhile, off the workers, rather than on the first request.
    // So does tzdata's zone.tab, read for hours in the called party's zone.
    tokio::task::spawn_blocking(|| {
        crate::core::phone::load_metadata();
        crate::core::hours::zone_of_region("GB");
    });
    let roots = tokio::task::spawn_blocking(crate::outbound::trust_roots)
        .await
        .context("while reading the trust store")?;
    let client = crate::outbound::client(roots).context("while setting up https")?;
    let following = Arc::new(Following::default());
    let app = Arc::new(App::new(
        Runtime::new(config, &following, &client),
        store.clone(),
        following,
        client,
    ));
    tokio::spawn(crate::reconcile::run(app.clone()));
    tokio::spawn(crate::schedule::run(app.clone()));
    tokio::spawn(crate::notify::run(app.clone()));
    tokio::spawn(crate::provider::ami::cdr::run(app.clone()));

    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            log::info!("listening on http://{a}");
        }
    }
    notify("READY=1");
    if let Some(every) = watchdog_interval() {
        tokio::spawn(watchdog(app.clone(), every));
    }

    let app2 = app.clone();
    let shutdown = async move {
        loop {
            match control.recv().await {
                Some(Signal::Reload) => {
                    log::info!("SIGHUP: reloading the config");
                    reload(&app2).await;
                }
                Some(Signal::Stop(name)) => {
                    log::info!("{name}: draining connections and stopping");
                    break;
                }
                None => break,
            }
        }
    };
    crate::http::serve(listeners, app.clone(), shutdown).await;
    notify("STOPPING=1");
    let drain = app.runtime().config.server.drain_timeout;
    // Requests whose partner hung up still run to their end.
    if tokio::time::timeout(drain, app.inflight.wait_idle())
        .await
        .is_err()
    {
        log::warn!(
            "{} requests still under way after {drain:?}; their calls keep their last recorded state",
            app.inflight.count()
        );
    }
    if let Ok(n) = store.read(calls::count_in_progress).await {
        if n > 0 {
            log::info!("{n} calls in progress keep their last recorded state");
        }
    }
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .context("while stopping the database writer")?;
    log::info!("stopped");
    Ok(())
}

async fn sync_partners(store: &Store, config: &Config) -> Result<(), crate::store::StoreError> {
    let list = config.partners.clone();
    let report = store
        .write(move |c| partners::sync(c, &list, now_ms()))
        .await?;
    log::info!(
        "partners: {} in config, {} added, {} updated, {} disabled",
        config.partners.len(),
        report.added,
        report.updated,
        report.disabled
    );
    Ok(())
}

/// Loads the config file again; a bad one is refused and the running one stays.
async fn reload(app: &App) {
    let current = app.runtime();
    let Source::File(path) = current.config.source.clone() else {
        log::warn!("reload: running on the embedded demo default; nothing to reload (start with --config FILE)");
        return;
    };
    let loaded = tokio::task::spawn_blocking(move || config::load_file(&path)).await;
    let new = match loaded {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            log::error!("reload refused, keeping the running config: {e}");
            return;
        }
        Err(e) => {
            log::error!("reload refused: {e}");
            return;
        }
    };
    for w in &new.warnings {
        log::warn!("reload: {w}");
    }
    let later = current.config.restart_needed(&new);
    if !later.is_empty() {
        log::warn!(
            "reload: {} changed; that takes effect at the next restart",
            later.join(", ")
        );
    }
    if let Err(e) = sync_partners(&app.store, &new).await {
        log::error!("reload refused, partners not synced: {e}");
        return;
    }
    log::set_max_level(new.log.level);
    app.replace(Runtime::reload(new, &app.following, &app.client, &current));
    log::info!("config reloaded");
}

/// Half the watchdog period systemd asks for (`WatchdogSec=` sets `WATCHDOG_USEC`),
/// when it is meant for this process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pets systemd's watchdog while the database writer commits: a wedged writer
/// (or runtime) stops the petting and systemd restarts c2cd.
async fn watchdog(app: Arc<App>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match tokio::time::timeout(every, app.store.write(|_| Ok(()))).await {
            Ok(Ok(())) => notify("WATCHDOG=1"),
            Ok(Err(e)) => log::error!("watchdog: the database writer fails ({e}); not telling systemd we are alive"),
            Err(_) => log::error!("watchdog: the database writer did not answer in {every:?}; not telling systemd we are alive"),
        }
    }
}

/// Tells systemd about our state when started with `Type=notify`.
fn notify(state: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::warn!("sd_notify {state}: {e}");
    }
}
