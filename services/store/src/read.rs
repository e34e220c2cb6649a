//! Reads: current versions, versions, history, the compartment, counts. Every read serves
//! the stored JSON text as it is.

use crate::search::{self, SearchQuery, SearchResult};
use crate::{Arg, Dialect, Method, Result, Store, StoreError, Version, bind_all, params};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

impl Store {
    /// The current version of `resource_type/id`; deleted resources give [`StoreError::Gone`].
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Version> {
        let mut conn = self.inner.reader.acquire().await?;
        read_current(self.dialect(), &mut conn, resource_type, id).await
    }

    /// For each `(resource_type, system, value)`, the current version that claims that unique
    /// identifier, if any: one query for them all (at most 100 keys).
    pub async fn by_unique_identifiers(
        &self,
        keys: &[(&str, &str, &str)],
    ) -> Result<Vec<Option<Version>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.len() > 100 {
            return Err(StoreError::invalid(
                "identifier",
                "at most 100 identifiers at once",
            ));
        }
        let d = self.dialect();
        let tuples: Vec<String> = (0..keys.len())
            .map(|i| {
                format!(
                    "({}, {}, {})",
                    d.ph(3 * i + 1),
                    d.ph(3 * i + 2),
                    d.ph(3 * i + 3)
                )
            })
            .collect();
        let sql = format!(
            "SELECT u.resource_type, u.system, u.value, r.resource_id, r.version_id, r.last_updated, r.body \
             FROM unique_identifier u JOIN resources r ON r.rid = u.rid \
             WHERE r.deleted = 0 AND (u.resource_type, u.system, u.value) IN ({})",
            tuples.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (t, system, value) in keys {
            q = q.bind(*t).bind(*system).bind(*value);
        }
        let rows = q.fetch_all(&self.inner.reader).await?;
        let mut out = vec![None; keys.len()];
        for row in rows {
            let (t, system, value): (String, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            for (i, k) in keys.iter().enumerate() {
                if k.0 == t && k.1 == system && k.2 == value {
                    out[i] = Some(Version {
                        resource_type: t.clone(),
                        id: row.try_get(3)?,
                        version_id: row.try_get(4)?,
                        last_updated: row.try_get(5)?,
                        deleted: false,
                        body: row.try_get(6)?,
                        method: Method::Put,
                    });
                }
            }
        }
        Ok(out)
    }

    /// One version of `resource_type/id`.
    pub async fn vread(&self, resource_type: &str, id: &str, version_id: i64) -> Result<Version> {
        let d = self.dialect();
        let row = sqlx::query(&d.sql(
            "SELECT h.version_id, h.last_updated, h.deleted, h.body, h.method \
             FROM resource_history h JOIN resources r ON r.rid = h.rid \
             WHERE r.resource_type = $1 AND r.resource_id = $2 AND h.version_id = $3",
        ))
        .bind(resource_type)
        .bind(id)
        .bind(version_id)
        .fetch_optional(&self.inner.reader)
        .await?;
        let row = row.ok_or_else(|| {
            StoreError::NotFound(format!("{resource_type}/{id}/_history/{version_id}"))
        })?;
        let v = history_version(resource_type, id, &row)?;
        if v.deleted {
            return Err(StoreError::Gone(format!(
                "{resource_type}/{id}/_history/{version_id}"
            )));
        }
        Ok(v)
    }

    /// The version that stands for a resource now: its current version, or, when it is
    /// deleted, the last version before the deletion. `None` for a resource never stored.
    pub async fn standing_version(&self, resource_type: &str, id: &str) -> Result<Option<Version>> {
        match self.read(resource_type, id).await {
            Ok(v) => return Ok(Some(v)),
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(StoreError::Gone(_)) => {}
            Err(e) => return Err(e),
        }
        let d = self.dialect();
        let row = sqlx::query(&d.sql(
            "SELECT h.version_id, h.last_updated, h.deleted, h.body, h.method \
             FROM resource_history h JOIN resources r ON r.rid = h.rid \
             WHERE r.resource_type = $1 AND r.resource_id = $2 AND h.deleted = 0 \
             ORDER BY h.version_id DESC LIMIT 1",
        ))
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&self.inner.reader)
        .await?;
        row.map(|r| history_version(resource_type, id, &r))
            .transpose()
    }

    /// History, newest first: of one resource, of a whole type, or of several types.
    pub async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        let d = self.dialect();
        let mut sql = String::from(
            "SELECT h.seq, r.resource_type, r.resource_id, h.version_id, h.last_updated, \
             h.deleted, h.body, h.method FROM resource_history h JOIN resources r ON r.rid = h.rid WHERE ",
        );
        let mut args = Vec::new();
        match &query.scope {
            HistoryScope::Instance { resource_type, id } => {
                args.push(Arg::Text(resource_type.clone()));
                args.push(Arg::Text(id.clone()));
                sql.push_str("h.resource_type = $1 AND r.resource_id = $2");
            }
            HistoryScope::Type(resource_type) => {
                args.push(Arg::Text(resource_type.clone()));
                sql.push_str("h.resource_type = $1");
            }
            HistoryScope::System(types) => {
                args.push(d.list_arg(types));
                sql.push_str(&d.in_list("h.resource_type", 1));
            }
        }
        if let Some(since) = query.since {
            args.push(Arg::I64(since));
            sql.push_str(&format!(" AND h.last_updated >= {}", d.ph(args.len())));
        }
        if let Some(before) = query.before_seq {
            args.push(Arg::I64(before));
            sql.push_str(&format!(" AND h.seq < {}", d.ph(args.len())));
        }
        args.push(Arg::I64(query.count as i64 + 1));
        sql.push_str(&format!(" ORDER BY h.seq DESC LIMIT {}", d.ph(args.len())));
        let sql = d.sql(&sql);
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.inner.reader)
            .await?;
        if let HistoryScope::Instance { resource_type, id } = &query.scope
            && rows.is_empty()
        {
            // Distinguish "no such resource" from "no versions in the window".
            let exists = sqlx::query(
                &d.sql("SELECT 1 FROM resources WHERE resource_type = $1 AND resource_id = $2"),
            )
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&self.inner.reader)
            .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("{resource_type}/{id}")));
            }
        }
        let mut versions = Vec::with_capacity(rows.len());
        let mut last_seq = None;
        for row in rows.iter().take(query.count) {
            let seq: i64 = row.try_get(0)?;
            let rt: String = row.try_get(1)?;
            let id: String = row.try_get(2)?;
            versions.push(Version {
                resource_type: rt,
                id,
                version_id: row.try_get(3)?,
                last_updated: row.try_get(4)?,
                deleted: row.try_get::<i64, _>(5)? != 0,
                body: row.try_get(6)?,
                method: Method::parse(&row.try_get::<String, _>(7)?),
            });
            last_seq = Some(seq);
        }
        let next_before_seq = if rows.len() > query.count {
            last_seq
        } else {
            None
        };
        Ok(HistoryPage {
            versions,
            next_before_seq,
        })
    }

    /// Runs a search on the read pool.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResult> {
        let mut conn = self.inner.reader.acquire().await?;
        search::run(self.dialect(), &mut conn, query).await
    }

    /// Runs the same search over several types (one query per type), on the read pool.
    pub async fn search_system(&self, searches: &[SearchQuery]) -> Result<SearchResult> {
        let mut conn = self.inner.reader.acquire().await?;
        search::run_system(self.dialect(), &mut conn, searches).await
    }

    /// The patient compartment: the Patient and every current resource that references it.
    pub async fn patient_everything(&self, patient_id: &str) -> Result<Vec<Version>> {
        let d = self.dialect();
        let patient = self.read("Patient", patient_id).await?;
        // Only the compartment's parameters count (params::PATIENT_COMPARTMENT).
        let pairs: Vec<String> = params::PATIENT_COMPARTMENT
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| format!("{t}|{p}")))
            .collect();
        let list = d.in_list("i.resource_type || '|' || i.param", 2);
        let sql = format!(
            "SELECT r.resource_type, r.resource_id, r.version_id, r.last_updated, r.body FROM resources r \
             WHERE r.deleted = 0 AND r.rid IN (SELECT i.rid FROM idx_reference i \
             WHERE i.target_type = 'Patient' AND i.target_id = {} AND {list}) ORDER BY r.rid",
            d.ph(1)
        );
        let args = [Arg::Text(patient_id.to_owned()), d.list_arg(&pairs)];
        let rows = bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.inner.reader)
            .await?;
        let mut out = vec![patient];
        for row in rows {
            out.push(current_from_row(&row)?);
        }
        Ok(out)
    }

    /// How many current (not deleted) resources of a type exist; `None` counts all types.
    pub async fn count(&self, resource_type: Option<&str>) -> Result<i64> {
        let d = self.dialect();
        let row =
            match resource_type {
                Some(t) => {
                    sqlx::query(&d.sql(
                        "SELECT COUNT(*) FROM resources WHERE resource_type = $1 AND deleted = 0",
                    ))
                    .bind(t)
                    .fetch_one(&self.inner.reader)
                    .await?
                }
                None => {
                    sqlx::query("SELECT COUNT(*) FROM resources WHERE deleted = 0")
                        .fetch_one(&self.inner.reader)
                        .await?
                }
            };
        Ok(row.try_get(0)?)
    }

    /// How many versions the history holds in all.
    pub async fn count_versions(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM resource_history")
            .fetch_one(&self.inner.reader)
            .await?;
        Ok(row.try_get(0)?)
    }
}

/// Which history to read.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// Only versions written at or after this instant (µs since the epoch).
    pub since: Option<i64>,
    pub count: usize,
    /// Keyset cursor from a previous page.
    pub before_seq: Option<i64>,
}

/// Whose history: one resource's, a type's, or several types' (the system's history, of the
/// types a caller may read).
#[derive(Debug, Clone)]
pub enum HistoryScope {
    Instance { resource_type: String, id: String },
    Type(String),
    System(Vec<String>),
}

/// One page of history.
#[derive(Debug)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    pub next_before_seq: Option<i64>,
}

pub(crate) fn history_version(resource_type: &str, id: &str, row: &AnyRow) -> Result<Version> {
    Ok(Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version_id: row.try_get(0)?,
        last_updated: row.try_get(1)?,
        deleted: row.try_get::<i64, _>(2)? != 0,
        body: row.try_get(3)?,
        method: Method::parse(&row.try_get::<String, _>(4)?),
    })
}

/// Decodes `resource_type, resource_id, version_id, last_updated, body` of a current row.
pub(crate) fn current_from_row(row: &AnyRow) -> Result<Version> {
    Ok(Version {
        resource_type: row.try_get(0)?,
        id: row.try_get(1)?,
        version_id: row.try_get(2)?,
        last_updated: row.try_get(3)?,
        deleted: false,
        body: row.try_get(4)?,
        method: Method::Put,
    })
}

pub(crate) async fn read_current(
    d: Dialect,
    conn: &mut AnyConnection,
    resource_type: &str,
    id: &str,
) -> Result<Version> {
    let row = sqlx::query(&d.sql(
        "SELECT version_id, last_updated, deleted, body FROM resources \
         WHERE resource_type = $1 AND resource_id = $2",
    ))
    .bind(resource_type)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("{resource_type}/{id}")))?;
    let v = Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version_id: row.try_get(0)?,
        last_updated: row.try_get(1)?,
        deleted: row.try_get::<i64, _>(2)? != 0,
        body: row.try_get(3)?,
        method: Method::Put,
    };
    if v.deleted {
        return Err(StoreError::Gone(format!("{resource_type}/{id}")));
    }
    Ok(v)
}
