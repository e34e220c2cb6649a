//! Browser sessions and sign-ins under way, in the database so that every replica knows them.

use crate::{Result, Store};
use sqlx::Row;

/// A stored session (the principal it signs in, and its CSRF token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub role: String,
    pub subject: String,
    pub patient: String,
    pub practitioner: String,
    /// SMART scopes, space-separated; empty when the sign-in carried none.
    pub scopes: String,
    pub csrf: String,
    pub expires: i64,
}

impl Store {
    pub async fn session_insert(&self, id_hash: &str, s: &SessionRow, now: i64) -> Result<()> {
        let d = self.dialect();
        // Expired sessions are removed as new ones arrive: the table stays small.
        sqlx::query(&d.sql("DELETE FROM web_sessions WHERE expires < $1"))
            .bind(now)
            .execute(&self.inner.writer)
            .await?;
        sqlx::query(&d.sql(
            "INSERT INTO web_sessions (id_hash, role, subject, patient, practitioner, scopes, csrf, created, expires) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        ))
        .bind(id_hash)
        .bind(&s.role)
        .bind(&s.subject)
        .bind(&s.patient)
        .bind(&s.practitioner)
        .bind(&s.scopes)
        .bind(&s.csrf)
        .bind(now)
        .bind(s.expires)
        .execute(&self.inner.writer)
        .await?;
        Ok(())
    }

    /// The live session with this id hash, if any.
    pub async fn session_get(&self, id_hash: &str, now: i64) -> Result<Option<SessionRow>> {
        let d = self.dialect();
        let row = sqlx::query(&d.sql(
            "SELECT role, subject, patient, practitioner, scopes, csrf, expires FROM web_sessions \
             WHERE id_hash = $1 AND expires >= $2",
        ))
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.inner.reader)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                role: r.try_get(0)?,
                subject: r.try_get(1)?,
                patient: r.try_get(2)?,
                practitioner: r.try_get(3)?,
                scopes: r.try_get(4)?,
                csrf: r.try_get(5)?,
                expires: r.try_get(6)?,
            })
        })
        .transpose()
    }

    pub async fn session_delete(&self, id_hash: &str) -> Result<()> {
        let d = self.dialect();
        sqlx::query(&d.sql("DELETE FROM web_sessions WHERE id_hash = $1"))
            .bind(id_hash)
            .execute(&self.inner.writer)
            .await?;
        Ok(())
    }

    /// Remembers a sign-in under way with the identity provider.
    pub async fn signin_insert(
        &self,
        state: &str,
        verifier: &str,
        return_to: &str,
        now: i64,
    ) -> Result<()> {
        let d = self.dialect();
        // Sign-ins not completed within ten minutes are forgotten.
        sqlx::query(&d.sql("DELETE FROM web_signins WHERE created < $1"))
            .bind(now - 600_000_000)
            .execute(&self.inner.writer)
            .await?;
        sqlx::query(&d.sql(
            "INSERT INTO web_signins (state, verifier, return_to, created) VALUES ($1, $2, $3, $4)",
        ))
        .bind(state)
        .bind(verifier)
        .bind(return_to)
        .bind(now)
        .execute(&self.inner.writer)
        .await?;
        Ok(())
    }

    /// Takes (once) the sign-in of `state`: its verifier and where to return.
    pub async fn signin_take(&self, state: &str, now: i64) -> Result<Option<(String, String)>> {
        let d = self.dialect();
        let row = sqlx::query(&d.sql(
            "DELETE FROM web_signins WHERE state = $1 AND created >= $2 RETURNING verifier, return_to",
        ))
        .bind(state)
        .bind(now - 600_000_000)
        .fetch_optional(&self.inner.writer)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }
}
