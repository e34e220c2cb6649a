//! The audited transaction: a store transaction that stamps every version with its author and
//! commits together with the audit record of the request. Owners' rules get it to read; only
//! [`crate::Writer`] writes through it.

use crate::caller::Caller;
use crate::error::Error;
use crate::interaction::Interaction;
use crate::touched::Touched;
use hospital_store::{SearchQuery, SearchResult, Version};
use serde_json::Value;

pub struct Tx {
    pub(crate) inner: hospital_store::Tx,
    caller: Caller,
    platform: crate::Platform,
    /// Versions written by owners' rules as consequences of the request's writes (a slot
    /// turned busy by a booking): recorded in the request's audit record with them.
    consequences: Vec<Version>,
}

impl Tx {
    /// Wraps a store transaction (see [`crate::Platform::begin`]).
    pub(crate) fn new(inner: hospital_store::Tx, caller: Caller, platform: crate::Platform) -> Tx {
        Tx {
            inner,
            caller,
            platform,
            consequences: Vec::new(),
        }
    }

    /// Declares that this transaction is a request's one write (a REST create, a batch entry):
    /// it is then sent at commit, with the audit record, in one statement on PostgreSQL and
    /// one hop to SQLite's writer shared with the other lone writes queued
    /// (`hospital_store::Tx::one_write`).
    pub fn one_write(&mut self) {
        self.inner.one_write();
    }

    /// Declares that this transaction's writes may wait for its next statement and go to the
    /// database together (`hospital_store::Tx::write_behind`): a transaction Bundle prepares
    /// every entry before it takes SQLite's single writer. A write's failure may then surface
    /// at a later call; [`Tx::failed_write`] names the write it belongs to.
    pub fn write_behind(&mut self) {
        self.inner.write_behind();
    }

    /// After a failure: the write (`Type/id`) it belongs to, when it surfaced after it.
    pub fn failed_write(&self) -> Option<&str> {
        self.inner.failed_write()
    }

    /// Sends the writes that wait ([`Tx::write_behind`]): their failures are known here.
    pub async fn flush_writes(&mut self) -> Result<(), Error> {
        Ok(self.inner.flush_writes().await?)
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The current version, seeing this transaction's own writes.
    pub async fn read(&mut self, resource_type: &str, id: &str) -> Result<Version, Error> {
        Ok(self.inner.read(resource_type, id).await?)
    }

    /// The current version, its row locked until the transaction ends (on PostgreSQL); an
    /// update of it in this transaction then reads nothing more.
    pub async fn read_for_update(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Version, Error> {
        Ok(self.inner.read_for_update(resource_type, id).await?)
    }

    /// [`Tx::read`], keeping the store's error (for [`crate::reveal`]).
    pub async fn read_raw(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Version, hospital_store::StoreError> {
        self.inner.read(resource_type, id).await
    }

    pub async fn exists(&mut self, resource_type: &str, id: &str) -> Result<bool, Error> {
        Ok(self.inner.exists(resource_type, id).await?)
    }

    /// Which of `targets` (type, id) are not stored: one query for them all.
    pub async fn missing(
        &mut self,
        targets: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, Error> {
        Ok(self.inner.missing(targets).await?)
    }

    pub async fn search(&mut self, query: &SearchQuery) -> Result<SearchResult, Error> {
        Ok(self.inner.search(query).await?)
    }

    /// Serialises writers that race on the same thing (conditional writes lock on what
    /// their condition means).
    pub async fn lock(&mut self, key: &str) -> Result<(), Error> {
        Ok(self.inner.lock(key).await?)
    }

    /// [`Tx::lock`] on `key`, then the next value of the counter `name` (in one round trip
    /// where the database can).
    pub async fn lock_and_count(&mut self, key: &str, name: &str) -> Result<i64, Error> {
        Ok(self.inner.lock_and_count(key, name).await?)
    }

    /// Next value of a named counter (1, 2, 3, ...), e.g. for facility patient codes.
    pub async fn next_counter(&mut self, name: &str) -> Result<i64, Error> {
        Ok(self.inner.next_counter(name).await?)
    }

    /// Replaces the time claims of `resource_type/id` (holder, `[lo, hi)` in microseconds):
    /// an overlapping claim of the same holder by another resource is refused (`CF_06`), on
    /// either store and under any concurrency.
    pub async fn claim_times(
        &mut self,
        resource_type: &str,
        id: &str,
        claims: &[(String, i64, i64)],
    ) -> Result<(), Error> {
        Ok(self.inner.claim_times(resource_type, id, claims).await?)
    }

    /// Queues a message to send later (the outbox), in this transaction: it exists if and only
    /// if the transaction commits; once per `key`.
    pub async fn enqueue(
        &mut self,
        key: &str,
        topic: &str,
        due: i64,
        payload: &str,
    ) -> Result<(), Error> {
        Ok(self.inner.enqueue(key, topic, due, payload).await?)
    }

    /// [`Tx::enqueue`] of several messages of one topic and payload (`(key, due)` each), in
    /// one statement.
    pub async fn enqueue_all(
        &mut self,
        messages: &[(String, i64)],
        topic: &str,
        payload: &str,
    ) -> Result<(), Error> {
        Ok(self.inner.enqueue_all(messages, topic, payload).await?)
    }

    /// Keeps a bank feed's verified delivery (its raw bytes, the provider's transaction id
    /// when known, what became of it) in this transaction: with the ledger's credit when there
    /// is one, and never without its transaction's audit record.
    pub async fn record_delivery(
        &mut self,
        provider: &str,
        transaction_id: Option<&str>,
        outcome: &str,
        raw: &[u8],
    ) -> Result<i64, Error> {
        Ok(self
            .inner
            .record_delivery(provider, transaction_id, outcome, raw)
            .await?)
    }

    /// Writes a new version of `resource_type/id` as a consequence of this transaction's
    /// writes, through its owner's rules as the owning service (an owner's rule keeping
    /// another of its resources in step: a slot turned busy by the appointment booking it).
    /// It is named in the request's audit record with the writes that caused it.
    pub async fn write_consequence(
        &mut self,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<Version, Error> {
        let platform = self.platform.clone();
        let out = platform
            .writer()
            .update_by_service(self, resource_type, id, body, if_match)
            .await?;
        self.consequences.push(out.version.clone());
        Ok(out.version)
    }

    /// The versions [`Tx::write_consequence`] wrote so far, for a caller that audits the
    /// request itself.
    pub fn consequences(&self) -> &[Version] {
        &self.consequences
    }

    /// Whether any version of the resource has been signed.
    pub async fn is_signed(&mut self, resource_type: &str, id: &str) -> Result<bool, Error> {
        Ok(self.inner.is_signed(resource_type, id).await?)
    }

    /// Writes the request's audit record in this transaction, then commits: the write and its
    /// record stand or fall together.
    pub async fn commit_audited(
        mut self,
        interaction: Interaction,
        resource_type: &str,
        mut touched: Touched,
        status: u16,
    ) -> Result<Touched, Error> {
        for v in std::mem::take(&mut self.consequences) {
            touched.add(&v);
        }
        let record = touched.record(&self.caller, interaction, resource_type, status);
        self.inner.audit(&record).await?;
        self.inner.commit().await?;
        touched.audited = true;
        Ok(touched)
    }

    /// Commits without an audit record of its own (the caller audits the request).
    pub async fn commit(self) -> Result<(), Error> {
        Ok(self.inner.commit().await?)
    }

    /// Undoes everything this transaction wrote (a write that was only tried, for
    /// `$validate`); the caller audits the request.
    pub async fn rollback(self) -> Result<(), Error> {
        Ok(self.inner.rollback().await?)
    }
}
