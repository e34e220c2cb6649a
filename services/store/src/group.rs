//! SQLite's group commit: write transactions that queue for the single writer share one
//! database transaction and one sync.
//!
//! Each logical transaction ([`crate::Tx`]) takes the writer only at its first statement (the
//! validation, extraction and serialisation before it hold nothing), runs inside a savepoint
//! of the shared transaction, and releases the savepoint when it commits. If more
//! transactions are queued behind it, it hands the writer to the next and waits; the last one
//! of a group (nobody queued, or the group full) commits the shared transaction and tells the
//! others. Nobody learns that their write committed before it is durable, and a member that
//! fails rolls back to its savepoint, leaving the others' work as it was.
//!
//! With `synchronous = FULL` every commit syncs the write-ahead log; the group pays for that
//! once instead of once per write.

use crate::{Result, StoreError};
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

/// The most members one shared transaction takes before it commits, and the longest it
/// stays open: a steady queue must not postpone everyone's acknowledgement indefinitely.
/// (Measured at 32 connections: a group rarely stays open longer than its queue takes to
/// drain; a 4 ms bound committed too often — the writer idles while a commit syncs — giving
/// 1,400 creates/s where 15–40 ms gave 1,640–1,690 and better read tails.)
const MAX_MEMBERS: usize = 128;
const MAX_OPEN: Duration = Duration::from_millis(20);

type Done = oneshot::Sender<std::result::Result<(), String>>;

pub(crate) struct Shared {
    /// The shared database transaction, open while it has members.
    tx: Option<Transaction<'static, Any>>,
    opened: Instant,
    members: usize,
    /// Members that released their savepoint and wait for the shared commit.
    waiting: Vec<Done>,
    /// A member's savepoint is open: set while a member works, cleared when it releases or
    /// rolls back. Found set by whoever takes the writer next, it is a member that vanished
    /// without either (its task cancelled during shutdown): its work is rolled back first, so
    /// that nobody commits it.
    unreleased: bool,
}

/// The writer's queue and its shared transaction.
pub(crate) struct Group {
    writer: AnyPool,
    shared: Arc<Mutex<Shared>>,
    /// Transactions waiting for the writer (a hint for when to commit: an error only costs
    /// a short wait, never a lost acknowledgement).
    queued: AtomicUsize,
}

/// A logical transaction's hold on the writer, from its first statement to its end.
pub(crate) struct Member {
    guard: OwnedMutexGuard<Shared>,
    /// Whether the member has a savepoint to roll back to. A member of one statement needs
    /// none (SQLite undoes a failed statement itself), and saves two hops to the writer.
    savepoint: bool,
    /// The savepoint is not opened yet: it goes in front of the member's first statement
    /// ([`Member::savepoint_prefix`]), in the same hop to the writer.
    pending: bool,
}

struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Group {
    pub(crate) fn new(writer: AnyPool) -> Group {
        Group {
            writer,
            shared: Arc::new(Mutex::new(Shared {
                tx: None,
                opened: Instant::now(),
                members: 0,
                waiting: Vec::new(),
                unreleased: false,
            })),
            queued: AtomicUsize::new(0),
        }
    }

    /// Waits for the writer and opens a savepoint for a new member (`savepoint: false` only
    /// for a member that runs a single statement).
    pub(crate) async fn join(&self, savepoint: bool) -> Result<Member> {
        let mut guard = {
            self.queued.fetch_add(1, Ordering::AcqRel);
            let _queued = Queued(&self.queued);
            self.shared.clone().lock_owned().await
        };
        heal(&mut guard).await?;
        if guard.tx.is_none() {
            // IMMEDIATE: the write lock is taken now, waiting (busy_timeout) for another
            // connection or process that holds it. A deferred transaction whose first member
            // only read would instead fail at its first write if someone else had written in
            // between (SQLITE_BUSY_SNAPSHOT, no waiting), failing the whole group.
            guard.tx = Some(self.writer.begin_with("BEGIN IMMEDIATE").await?);
            guard.opened = Instant::now();
            guard.members = 0;
        }
        guard.members += 1;
        // Set before the savepoint is sent: a member that vanishes is rolled back by the next
        // (a savepoint never sent then gives "no such savepoint", which `heal` expects).
        guard.unreleased = savepoint;
        Ok(Member {
            guard,
            savepoint,
            pending: savepoint,
        })
    }

    /// Commits a member: its savepoint is released (unless `released` already), and it
    /// returns once the shared transaction holding it has committed (or failed, and with it
    /// this member's writes).
    pub(crate) async fn commit(&self, mut member: Member, released: bool) -> Result<()> {
        if member.savepoint && !member.pending && !released {
            let conn: &mut AnyConnection = member.guard.tx.as_mut().expect("open");
            if let Err(e) = sqlx::query("RELEASE member").execute(conn).await {
                abandon(&mut member.guard, &e.to_string()).await;
                return Err(e.into());
            }
        }
        member.guard.unreleased = false;
        let full = member.guard.members >= MAX_MEMBERS || member.guard.opened.elapsed() >= MAX_OPEN;
        if self.queued.load(Ordering::Acquire) == 0 || full {
            return finish(&mut member.guard).await.map_err(failed);
        }
        let (done, mut wait) = oneshot::channel();
        member.guard.waiting.push(done);
        drop(member);
        loop {
            match tokio::time::timeout(Duration::from_millis(20), &mut wait).await {
                Ok(Ok(result)) => return result.map_err(failed),
                Ok(Err(_)) => return Err(failed("the writer stopped".into())),
                Err(_) => {
                    // Whoever was queued has not committed yet (or was cancelled before its
                    // turn): commit the group ourselves once the writer is free.
                    let mut guard = self.shared.clone().lock_owned().await;
                    if let Ok(result) = wait.try_recv() {
                        return result.map_err(failed);
                    }
                    heal(&mut guard).await?;
                    if guard.tx.is_some() {
                        let _ = finish(&mut guard).await;
                    }
                }
            }
        }
    }

    /// Rolls a member back to its savepoint; the group's other members keep their work.
    pub(crate) async fn rollback(&self, mut member: Member) -> Result<()> {
        let undone = if member.savepoint && !member.pending {
            let conn: &mut AnyConnection = member.guard.tx.as_mut().expect("open");
            sqlx::query("ROLLBACK TO member; RELEASE member")
                .execute(conn)
                .await
                .map(|_| ())
        } else {
            Ok(())
        };
        member.guard.members -= 1;
        member.guard.unreleased = false;
        if let Err(e) = undone {
            // The shared transaction is gone (SQLite rolls it back itself on some errors):
            // everyone waiting on it learns so.
            abandon(&mut member.guard, &e.to_string()).await;
            return Err(e.into());
        }
        if self.queued.load(Ordering::Acquire) == 0 {
            finish(&mut member.guard).await.map_err(failed)?;
        }
        Ok(())
    }

    /// A member dropped without commit or rollback (an error path, a cancelled request): its
    /// savepoint is rolled back in the background.
    pub(crate) fn release_dropped(self: &Arc<Self>, member: Member) {
        let group = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    if let Err(e) = group.rollback(member).await {
                        tracing::warn!(error = %e, "rolling back a dropped write failed");
                    }
                });
            }
            Err(_) => {
                // No runtime (shutting down): dropping the shared transaction rolls it back.
                let mut member = member;
                let waiting = std::mem::take(&mut member.guard.waiting);
                member.guard.tx = None;
                for w in waiting {
                    let _ = w.send(Err("the writer stopped".into()));
                }
            }
        }
    }
}

impl Member {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        self.guard.tx.as_mut().expect("open")
    }

    /// What must precede the member's next statement: its savepoint, if not sent yet (then
    /// counted as sent). A script that begins with it opens the savepoint in its own hop.
    pub(crate) fn savepoint_prefix(&mut self) -> &'static str {
        if std::mem::take(&mut self.pending) {
            "SAVEPOINT member; "
        } else {
            ""
        }
    }

    /// Opens the savepoint now if it is still pending (before a statement that cannot carry
    /// it in front).
    pub(crate) async fn open_savepoint(&mut self) -> Result<()> {
        if self.pending {
            sqlx::query("SAVEPOINT member").execute(self.conn()).await?;
            self.pending = false;
        }
        Ok(())
    }

    /// Whether the member has a savepoint (sent or pending) that its commit must release.
    pub(crate) fn has_savepoint(&self) -> bool {
        self.savepoint
    }
}

pub(crate) fn failed(e: String) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!(
        "the group commit failed: {e}"
    )))
}

/// Rolls back the savepoint of a member that vanished without releasing it (see
/// [`Shared::unreleased`]).
async fn heal(shared: &mut Shared) -> Result<()> {
    if !shared.unreleased {
        return Ok(());
    }
    shared.unreleased = false;
    let Some(tx) = shared.tx.as_mut() else {
        return Ok(());
    };
    let conn: &mut AnyConnection = tx;
    match sqlx::query("ROLLBACK TO member; RELEASE member")
        .execute(conn)
        .await
    {
        Ok(_) => {}
        // It had released its savepoint after all (cancelled while the release ran): its
        // work is a finished member's, committed with the group.
        Err(e) if e.to_string().contains("no such savepoint") => {
            tracing::debug!("a vanished member had released its savepoint");
        }
        Err(e) => {
            abandon(shared, &e.to_string()).await;
            return Err(e.into());
        }
    }
    shared.members = shared.members.saturating_sub(1);
    Ok(())
}

/// Commits the shared transaction and tells every waiting member.
async fn finish(shared: &mut Shared) -> std::result::Result<(), String> {
    let result = match shared.tx.take() {
        Some(tx) => tx.commit().await.map_err(|e| e.to_string()),
        None => Ok(()),
    };
    shared.members = 0;
    for w in shared.waiting.drain(..) {
        let _ = w.send(result.clone());
    }
    result
}

/// Gives up the shared transaction after a failure that may have ended it: rolled back, and
/// every waiting member told.
async fn abandon(shared: &mut Shared, why: &str) {
    if let Some(tx) = shared.tx.take() {
        let _ = tx.rollback().await;
    }
    shared.members = 0;
    shared.unreleased = false;
    for w in shared.waiting.drain(..) {
        let _ = w.send(Err(why.to_owned()));
    }
}
