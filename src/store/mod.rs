//! The one module that owns SQLite.
//!
//! - One writer thread owns the write connection. Writes are queued to it (a
//!   bounded queue: a full queue is an overload answer, never unbounded memory); it
//!   runs whatever is queued in one transaction, commits once (group commit,
//!   `synchronous=FULL`), and only then answers the waiting requests. An
//!   acknowledged write is on disk.
//! - A write that fails is undone alone: its batch is rolled back and run again
//!   with each write in a savepoint of its own, so a write may run twice. The
//!   first run has no savepoints, whose copies of every page a write touches
//!   cost a fifth of the XIP rate (bench/compare.sh).
//! - Reads run on tokio's blocking pool with read-only connections.
//! - No SQLite call ever runs on an async worker thread.
//! - The schema is migrated in numbered steps, each in a transaction; a database
//!   from a newer c2cd is refused.

pub mod blocklist;
pub mod callbacks;
pub mod calls;
pub mod cloud9;
pub mod legs;
pub mod partners;
pub mod pbx;
pub mod sales;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::config;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("commit failed: {0}")]
    Commit(String),
    /// The write queue is full, or another process held the database's
    /// lock past the busy timeout: worth a retry soon.
    #[error("the database is busy (the write queue is full, or another process holds its lock)")]
    Busy,
    #[error("the database writer has stopped")]
    Closed,
    #[error("the database has schema version {found}, newer than this c2cd knows ({known}); run the newer c2cd or restore a backup")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// A write queued for the writer thread, with the request waiting for it.
trait Write: Send {
    /// Runs the write in the open transaction; false when it failed. Runs
    /// again, after a rollback, when a write of its batch failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Its savepoint could not be opened or closed: the write failed.
    fn fail(&mut self, e: rusqlite::Error);
    /// Whether its last run failed.
    fn failed(&self) -> bool;
    /// Its last run failed for the disk: full, or an I/O error.
    fn disk_failed(&self) -> bool;
    /// Answers the waiting request, with the batch's commit.
    fn done(self: Box<Self>, commit: Result<(), StoreError>);
}

type Job = Box<dyn Write>;

struct Queued<R, F> {
    f: F,
    out: Option<rusqlite::Result<R>>,
    tx: tokio::sync::oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Write for Queued<R, F>
where
    R: Send,
    F: FnMut(&Connection) -> rusqlite::Result<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let out = (self.f)(conn);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn fail(&mut self, e: rusqlite::Error) {
        self.out = Some(Err(e));
    }

    fn failed(&self) -> bool {
        matches!(self.out, Some(Err(_)))
    }

    fn disk_failed(&self) -> bool {
        matches!(&self.out, Some(Err(e)) if is_disk_error(e))
    }

    fn done(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.out, commit) {
            (Some(Err(e)), _) if is_busy(&e) => Err(StoreError::Busy),
            (Some(Err(e)), _) => Err(StoreError::Sqlite(e)),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Closed),
        };
        let _ = self.tx.send(answer);
    }
}

enum Msg {
    Job(Job),
    Shutdown,
}

/// Counters the writer keeps, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Batches run a second time, each write in a savepoint, because one of
    /// their writes failed.
    pub reruns: AtomicU64,
    /// The disk's last failure (full, I/O) and when, until a write that
    /// changed rows is committed again: what `/healthz` reports.
    disk: Mutex<Option<(std::time::Instant, String)>>,
}

/// How long a disk failure is reported without a write to confirm it: past
/// this, `/healthz` tries again (the operator may have freed space).
const DISK_FAILURE_HELD: Duration = Duration::from_secs(5);

impl WriterStats {
    /// Why writes fail now for the disk, if they did lately.
    pub fn disk_failing(&self) -> Option<String> {
        let d = self.disk.lock().ok()?;
        let (at, why) = d.as_ref()?;
        (at.elapsed() < DISK_FAILURE_HELD).then(|| why.clone())
    }

    fn set_disk(&self, why: Option<String>) {
        if let Ok(mut d) = self.disk.lock() {
            *d = why.map(|w| (std::time::Instant::now(), w));
        }
    }
}

/// SQLITE_BUSY and SQLITE_LOCKED: another connection (a CLI, an operator's
/// sqlite3) held the lock past the busy timeout.
fn is_busy(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    matches!(e.sqlite_error_code(), Some(DatabaseBusy | DatabaseLocked))
}

/// SQLITE_FULL and the I/O errors: the disk, not the write.
fn is_disk_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    matches!(e.sqlite_error_code(), Some(DiskFull | SystemIoFailure))
}

/// A handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    queue: SyncSender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    stats: Arc<WriterStats>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_IDLE_READERS: usize = 8;

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) and migrates the database, and starts the writer.
    /// Blocking: call before the runtime serves requests, or from a blocking thread.
    pub fn open(cfg: &config::Database) -> Result<Store, StoreError> {
        let conn = open_migrated(&cfg.path)?;
        let (queue, rx) = mpsc::sync_channel(cfg.queue);
        let stats = Arc::new(WriterStats::default());
        let batch = cfg.batch;
        let st = stats.clone();
        let writer = std::thread::Builder::new()
            .name("c2cd-writer".into())
            .spawn(move || writer_loop(conn, rx, batch, &st))
            .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: cfg.path.clone(),
                queue,
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                stats,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Queues `f` for the writer and waits until the transaction that ran it is
    /// committed. If `f` fails, its changes are undone and the other writes of
    /// the batch are kept. `f` may run twice (when a neighbour in its batch
    /// fails): what it does outside the database must bear that.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<R, StoreError>>();
        let job: Job = Box::new(Queued { f, out: None, tx });
        self.inner
            .queue
            .try_send(Msg::Job(job))
            .map_err(|e| match e {
                TrySendError::Full(_) => StoreError::Busy,
                TrySendError::Disconnected(_) => StoreError::Closed,
            })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut v| v.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_readonly(&inner.path)?,
            };
            let r = f(&conn).map_err(StoreError::from);
            if let Ok(mut v) = inner.readers.lock() {
                if v.len() < MAX_IDLE_READERS {
                    v.push(conn);
                }
            }
            r
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Lets the writer finish what is queued, commit, and stop. Blocking.
    pub fn shutdown(&self) {
        let _ = self.inner.queue.send(Msg::Shutdown);
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Opens (creating if needed) and migrates the database for writing: WAL,
/// `synchronous=FULL`, foreign keys.
fn open_migrated(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut conn = open_conn(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each write runs in a savepoint, whose undo copies (the statement
    // journal) otherwise spill to a temporary file past 64 KiB: a pwrite per
    // page a write touches. In memory they cost a copy (bench/profile.sh).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // An upgrade keeps the database as it was before migrating it, beside it.
    schema::migrate(&mut conn, |found| {
        path.with_extension(format!("db.v{found}.bak"))
    })?;
    Ok(conn)
}

/// A connection for a command that writes beside the running daemon (the
/// blocklist's): SQLite serialises its transactions with the daemon's writer,
/// each waiting up to `busy` for the other's. The database is created and
/// migrated as the daemon would, so that a list can be loaded before the
/// daemon first starts.
pub fn open_beside_daemon(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    let conn = open_migrated(path)?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

/// Writes a consistent copy of the database at `src` to `dest`, safely while
/// c2cd runs: a snapshot (`VACUUM INTO`) into a temporary file beside `dest`,
/// synced, then renamed over it. Returns the copy's size in bytes.
pub fn backup(src: &Path, dest: &Path) -> Result<u64, StoreError> {
    let conn = open_readonly(src)?;
    backup_conn(&conn, dest)
}

fn backup_conn(conn: &Connection, dest: &Path) -> Result<u64, StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| StoreError::Commit(format!("backup to {}: {e}", dest.display()));
    let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy()])?;
    // SECURITY: a copy of the calls is as private as the database.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, dest).map_err(io)?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(std::fs::metadata(dest).map_err(io)?.len())
}

/// A read-only connection, for the CLI and the read pool.
pub fn open_readonly(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_conn(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    schema::check_version(&conn)?;
    Ok(conn)
}

fn writer_loop(conn: Connection, rx: Receiver<Msg>, batch: usize, stats: &WriterStats) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch);
    loop {
        let mut stop = match rx.recv() {
            Ok(Msg::Job(j)) => {
                jobs.push(j);
                false
            }
            Ok(Msg::Shutdown) | Err(_) => true,
        };
        while !stop && jobs.len() < batch {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => jobs.push(j),
                Ok(Msg::Shutdown) => stop = true,
                Err(_) => break,
            }
        }
        if !jobs.is_empty() {
            run_batch(&conn, &mut jobs, stats);
        }
        if stop {
            break;
        }
    }
    // Writes queued behind the shutdown are answered "closed" by dropping them.
    drop(rx);
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        log::warn!("checkpoint at shutdown failed: {e}");
    }
}

fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_batch(conn: &Connection, jobs: &mut Vec<Job>, stats: &WriterStats) {
    let changes = conn.total_changes();
    let ran = match run_all(conn, jobs, false) {
        Ok(false) => {
            // A write failed: the others are run again, each in a savepoint
            // of its own, so that the failed one is undone alone.
            stats.reruns.fetch_add(1, Ordering::Relaxed);
            run_all(conn, jobs, true)
        }
        ran => ran,
    };
    let commit = ran.and_then(|_| exec_cached(conn, "COMMIT"));
    if commit.is_err() && !conn.is_autocommit() {
        // A failed COMMIT may leave the transaction open: end it, so that the
        // next batch can begin.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let n = jobs.iter().filter(|j| !j.failed()).count() as u64;
    match &commit {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(n, Ordering::Relaxed);
            if jobs.iter().any(|j| j.disk_failed()) {
                log::error!(
                    "writes fail: the disk is full or failing (SQLITE_FULL or an I/O error)"
                );
                stats.set_disk(Some("the disk is full or failing".into()));
            } else if conn.total_changes() > changes {
                stats.set_disk(None);
            }
        }
        Err(e) => {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            log::error!("commit of {n} writes failed: {e}");
            if is_disk_error(e) {
                stats.set_disk(Some(format!("commit failed: {e}")));
            }
        }
    }
    for job in jobs.drain(..) {
        let c = match &commit {
            Ok(()) => Ok(()),
            Err(e) if is_busy(e) => Err(StoreError::Busy),
            Err(e) => Err(StoreError::Commit(e.to_string())),
        };
        job.done(c);
    }
}

/// Runs `jobs` in a new transaction, left open when all went well. Without
/// savepoints it stops at the first write that fails and rolls the
/// transaction back (`Ok(false)`); with them, each write that fails is undone
/// alone and the rest go on.
fn run_all(conn: &Connection, jobs: &mut [Job], savepoints: bool) -> rusqlite::Result<bool> {
    // IMMEDIATE: the write lock is taken (waiting up to the busy timeout) before
    // a job reads, so that a CLI's write beside the daemon (c2cd balance, c2cd
    // export) cannot turn a job's read-then-write into SQLITE_BUSY_SNAPSHOT.
    exec_cached(conn, "BEGIN IMMEDIATE")?;
    for job in jobs.iter_mut() {
        if !savepoints {
            if !job.run(conn) {
                // Some errors (a full disk) end the transaction themselves.
                if !conn.is_autocommit() {
                    exec_cached(conn, "ROLLBACK")?;
                }
                return Ok(false);
            }
            continue;
        }
        // The savepoint statements are prepared once, like the writes' own.
        if let Err(e) = exec_cached(conn, "SAVEPOINT job") {
            job.fail(e);
            continue;
        }
        let kept = if job.run(conn) {
            exec_cached(conn, "RELEASE job")
        } else {
            exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"))
        };
        if let Err(e) = kept {
            job.fail(e);
        }
    }
    Ok(true)
}

/// An in-memory database at the current schema: for the tests of modules
/// that read and write the store's tables (the schema is this module's own).
#[cfg(test)]
pub fn memory() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    schema::migrate(&mut c, |_| unreachable!()).unwrap();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> config::Database {
        config::Database {
            path: dir.join("t.db"),
            queue: 1000,
            batch: 16,
        }
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("c2cd-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_group_committed_and_durable() {
        let dir = tmpdir("group");
        let store = Store::open(&cfg(&dir)).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.write(move |c| {
                    c.execute("INSERT INTO partners (id, name, dialects, provider, prompt_set, source, time_limit, enabled, created_at, updated_at) VALUES (?1, 'n', 'xip', 'p', 'XIP1', 'XIP1', 1, 1, 0, 0)", [format!("p{i}")])
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 1);
        }
        let commits = store.stats().commits.load(Ordering::Relaxed);
        assert!(
            commits < 200,
            "{commits} commits for 200 writes: no grouping"
        );
        store.shutdown();
        let n: i64 = open_readonly(&dir.join("t.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM partners", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
    }

    #[tokio::test]
    async fn a_failing_write_does_not_undo_its_batch_neighbours() {
        let dir = tmpdir("savepoint");
        let store = Store::open(&cfg(&dir)).unwrap();
        let bad = store.write(|c| c.execute("INSERT INTO nowhere VALUES (1)", []));
        let good = store.write(|c| {
            c.execute("INSERT INTO partners (id, name, dialects, provider, prompt_set, source, time_limit, enabled, created_at, updated_at) VALUES ('x', 'n', 'xip', 'p', 'XIP1', 'XIP1', 1, 1, 0, 0)", [])
        });
        let (bad, good) = tokio::join!(bad, good);
        assert!(bad.is_err());
        assert_eq!(good.unwrap(), 1);
        let n: i64 = store
            .read(|c| c.query_row("SELECT count(*) FROM partners", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(n, 1);
        store.shutdown();
        assert!(matches!(
            store.write(|_| Ok(())).await,
            Err(StoreError::Closed)
        ));
    }

    /// Writes that fail half-way among many good ones: each failed one is
    /// undone whole, every other is kept once, and the batches that held a
    /// failure were run again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_failing_half_way_is_undone_alone_in_a_busy_batch() {
        let dir = tmpdir("rerun");
        let store = Store::open(&cfg(&dir)).unwrap();
        let insert = "INSERT INTO partners (id, name, dialects, provider, prompt_set, source, time_limit, enabled, created_at, updated_at) VALUES (?1, 'n', 'xip', 'p', 'XIP1', 'XIP1', 1, 1, 0, 0)";
        let mut tasks = Vec::new();
        for i in 0..300 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let r = s
                    .write(move |c| {
                        c.execute(insert, [format!("p{i}")])?;
                        c.execute(insert, [format!("q{i}")])?;
                        if i % 7 == 3 {
                            // Its two rows are in: the failure must undo them.
                            c.execute("INSERT INTO nowhere VALUES (1)", [])?;
                        }
                        Ok(i)
                    })
                    .await;
                (i, r)
            }));
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r {
                Ok(n) => assert_eq!(n, i),
                Err(StoreError::Sqlite(_)) => assert_eq!(i % 7, 3, "write {i} failed"),
                Err(e) => panic!("write {i}: {e}"),
            }
        }
        let ids: Vec<String> = store
            .read(|c| {
                c.prepare("SELECT id FROM partners")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .await
            .unwrap();
        let expected: std::collections::BTreeSet<String> = (0..300)
            .filter(|i| i % 7 != 3)
            .flat_map(|i| [format!("p{i}"), format!("q{i}")])
            .collect();
        assert_eq!(ids.len(), expected.len(), "a row twice, or one left behind");
        assert_eq!(
            ids.into_iter().collect::<std::collections::BTreeSet<_>>(),
            expected
        );
        assert!(store.stats().reruns.load(Ordering::Relaxed) >= 1);
        assert_eq!(
            store.stats().writes.load(Ordering::Relaxed),
            expected.len() as u64 / 2
        );
        store.shutdown();
    }

    #[tokio::test]
    async fn a_backup_is_a_consistent_copy_taken_while_running() {
        let dir = tmpdir("backup");
        let store = Store::open(&cfg(&dir)).unwrap();
        store
            .write(|c| {
                c.execute("INSERT INTO partners (id, name, dialects, provider, prompt_set, source, time_limit, enabled, created_at, updated_at) VALUES ('b', 'n', 'xip', 'p', 'XIP1', 'XIP1', 1, 1, 0, 0)", [])
            })
            .await
            .unwrap();
        let dest = dir.join("copy.db");
        let size = backup(&dir.join("t.db"), &dest).unwrap();
        assert!(size > 0);
        let n: i64 = open_readonly(&dest)
            .unwrap()
            .query_row("SELECT count(*) FROM partners", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        store.shutdown();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tmpdir("newer");
        let c = Connection::open(dir.join("t.db")).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        match Store::open(&cfg(&dir)) {
            Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a newer schema"),
        }
    }
}
