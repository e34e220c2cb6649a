//! Signatures over the exact content of a resource version (medical-record law: who signed
//! what, when, over which content). The content is canonical JSON — the resource with only
//! the labels of its `meta` (`security` and `tag`: what the signer saw the entry classified
//! as), object keys sorted, no insignificant whitespace — hashed with SHA-256, and the hash
//! signed with the signer's Ed25519 key. The server's bookkeeping in `meta` (version, time,
//! who recorded it) is outside: it is attested by the signature record itself.
//!
//! Keys live behind [`KeyStore`]; [`LocalKeyStore`] keeps one key per clinician in the
//! database. A PKI certificate store or a remote signing service implements the same trait.

use crate::{Result, Store, StoreError, Tx};
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// JSON with object keys sorted at every level, compact, strings as serde writes them (no
/// escaping beyond JSON's own): the form several signature schemes hash.
pub fn sorted_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&map[*k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Canonical form of a resource for signing: of `meta` only `security` and `tag`, keys
/// sorted, compact.
pub fn canonical(resource: &Value) -> String {
    let mut v = resource.clone();
    if let Value::Object(m) = &mut v
        && let Some(Value::Object(meta)) = m.remove("meta")
    {
        let labels: serde_json::Map<String, Value> = meta
            .into_iter()
            .filter(|(k, _)| k == "security" || k == "tag")
            .collect();
        if !labels.is_empty() {
            m.insert("meta".into(), Value::Object(labels));
        }
    }
    sorted_json(&v)
}

/// SHA-256 of the canonical content of stored resource JSON, hex.
pub fn digest_of(body: &str) -> Result<String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| StoreError::invalid("resource", format!("unreadable: {e}")))?;
    Ok(hex::encode(Sha256::digest(canonical(&v).as_bytes())))
}

/// Holds signers' keys. Implementations: [`LocalKeyStore`]; a PKI or remote signer later.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Signs `digest` as `signer` (e.g. `Practitioner/123`).
    async fn sign(&self, tx: &mut Tx, signer: &str, digest: &[u8]) -> Result<Vec<u8>>;
    /// Whether `signature` over `digest` is `signer`'s.
    async fn verify(
        &self,
        store: &Store,
        signer: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool>;
}

/// Ed25519 keys per signer, created on first use, kept in `signing_keys`.
pub struct LocalKeyStore;

#[async_trait::async_trait]
impl KeyStore for LocalKeyStore {
    async fn sign(&self, tx: &mut Tx, signer: &str, digest: &[u8]) -> Result<Vec<u8>> {
        let d = tx.dialect();
        let row =
            sqlx::query(&d.sql("SELECT secret_key FROM signing_keys WHERE practitioner_id = $1"))
                .bind(signer)
                .fetch_optional(tx.conn().await?)
                .await?;
        let key = match row {
            Some(r) => {
                let bytes = hex::decode(r.try_get::<String, _>(0)?)
                    .map_err(|_| StoreError::invalid("signing_keys", "corrupt key"))?;
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| StoreError::invalid("signing_keys", "corrupt key"))?;
                SigningKey::from_bytes(&arr)
            }
            None => {
                let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
                sqlx::query(&d.sql(
                    "INSERT INTO signing_keys (practitioner_id, public_key, secret_key, created) VALUES ($1, $2, $3, $4)",
                ))
                .bind(signer)
                .bind(hex::encode(key.verifying_key().to_bytes()))
                .bind(hex::encode(key.to_bytes()))
                .bind(crate::dates::now_micros())
                .execute(tx.conn().await?)
                .await?;
                key
            }
        };
        Ok(key.sign(digest).to_bytes().to_vec())
    }

    async fn verify(
        &self,
        store: &Store,
        signer: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        let d = store.dialect();
        let row =
            sqlx::query(&d.sql("SELECT public_key FROM signing_keys WHERE practitioner_id = $1"))
                .bind(signer)
                .fetch_optional(store.pool())
                .await?;
        let Some(row) = row else { return Ok(false) };
        let Ok(bytes) = hex::decode(row.try_get::<String, _>(0)?) else {
            return Ok(false);
        };
        let Ok(arr) = <[u8; 32]>::try_from(bytes) else {
            return Ok(false);
        };
        let Ok(key) = VerifyingKey::from_bytes(&arr) else {
            return Ok(false);
        };
        let Ok(sig) = <[u8; 64]>::try_from(signature) else {
            return Ok(false);
        };
        Ok(key
            .verify(digest, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok())
    }
}

/// One recorded signature.
#[derive(Debug, Clone)]
pub struct SignatureRecord {
    pub resource_type: String,
    pub resource_id: String,
    pub version_id: i64,
    pub provenance_id: String,
    pub signer: String,
    /// Hex SHA-256 of the canonical content that was signed.
    pub digest: String,
    /// Base64 signature.
    pub signature: String,
    pub signed_at: i64,
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

impl Tx {
    /// Records a signature (in the transaction that creates its Provenance).
    pub async fn record_signature(
        &mut self,
        _key: &crate::WriteKey,
        s: &SignatureRecord,
    ) -> Result<()> {
        let d = self.dialect();
        sqlx::query(&d.sql(
            "INSERT INTO signatures (resource_type, resource_id, version_id, provenance_id, signer, digest, signature, signed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ))
        .bind(&s.resource_type)
        .bind(&s.resource_id)
        .bind(s.version_id)
        .bind(&s.provenance_id)
        .bind(&s.signer)
        .bind(&s.digest)
        .bind(&s.signature)
        .bind(s.signed_at)
        .execute(self.conn().await?)
        .await?;
        Ok(())
    }

    /// Whether any version of the resource has been signed.
    pub async fn is_signed(&mut self, resource_type: &str, id: &str) -> Result<bool> {
        let d = self.dialect();
        let row =
            sqlx::query(&d.sql(
                "SELECT 1 FROM signatures WHERE resource_type = $1 AND resource_id = $2 LIMIT 1",
            ))
            .bind(resource_type)
            .bind(id)
            .fetch_optional(self.conn().await?)
            .await?;
        Ok(row.is_some())
    }
}

impl Store {
    /// The newest signature of a resource, if any.
    pub async fn latest_signature(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<SignatureRecord>> {
        let d = self.dialect();
        let row = sqlx::query(&d.sql(
            "SELECT version_id, provenance_id, signer, digest, signature, signed_at FROM signatures \
             WHERE resource_type = $1 AND resource_id = $2 ORDER BY version_id DESC LIMIT 1",
        ))
        .bind(resource_type)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SignatureRecord {
                resource_type: resource_type.to_owned(),
                resource_id: id.to_owned(),
                version_id: r.try_get(0)?,
                provenance_id: r.try_get(1)?,
                signer: r.try_get(2)?,
                digest: r.try_get(3)?,
                signature: r.try_get(4)?,
                signed_at: r.try_get(5)?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_keeps_the_labels_of_meta() {
        let plain = json!({"a": 1, "meta": {"versionId": "1"}});
        let tagged = json!({"a": 1, "meta": {"versionId": "1", "tag": [{"code": "x"}]}});
        let labelled = json!({"a": 1, "meta": {"security": [{"code": "R"}]}});
        assert_ne!(canonical(&plain), canonical(&tagged));
        assert_ne!(canonical(&plain), canonical(&labelled));
        assert_eq!(
            canonical(&labelled),
            r#"{"a":1,"meta":{"security":[{"code":"R"}]}}"#
        );
    }

    #[test]
    fn canonical_form_ignores_key_order_and_meta() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "é"}, "meta": {"versionId": "1"}});
        let b = json!({"a": {"x": "é", "y": [1, 2]}, "b": 1, "meta": {"versionId": "2"}});
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), r#"{"a":{"x":"é","y":[1,2]},"b":1}"#);
    }
}
