//! The licences added to this node (`licences` table): each signed licence envelope, keyed by
//! its licence id, exactly as it was verified. Files made before this table existed get it,
//! empty, when opened.
//!
//! What is stored verified when it was put; a stored value that no longer verifies can only be
//! damage and is [`StoreError::Corrupt`]. Whether a licence still opens its release (its
//! window, revocation, this node) is not the store's question.

use licet_proto::{LicenceId, licence::VerifiedLicence, signed::SignedKind};
use redb::ReadableTable;

use super::{
    Store, StoreError,
    error::check_len,
    schema::{LICENCES, LICENCES_NAME},
};

/// Largest stored licence envelope.
fn max_licence_bytes() -> usize {
    SignedKind::Licence.max_envelope_bytes()
}

impl Store {
    /// Every licence held, by id.
    pub fn licence_list(&self) -> Result<Vec<VerifiedLicence>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, LICENCES)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read licences", e))? {
            let (key, value) = entry.map_err(|e| self.db("read licences", e))?;
            let id = LicenceId(*key.value());
            let corrupt = |reason: String| StoreError::Corrupt {
                table: LICENCES_NAME,
                key: id.to_string(),
                reason,
            };
            if value.value().len() > max_licence_bytes() {
                return Err(corrupt(format!(
                    "{} bytes, over the limit of {}",
                    value.value().len(),
                    max_licence_bytes()
                )));
            }
            let licence =
                VerifiedLicence::from_bytes(value.value()).map_err(|e| corrupt(e.to_string()))?;
            if licence.id() != id {
                return Err(corrupt(format!("it is licence {}", licence.id())));
            }
            out.push(licence);
        }
        Ok(out)
    }

    /// Keeps `licence`; returns whether it was new (an equal id is the same licence).
    pub fn licence_put(&self, licence: &VerifiedLicence) -> Result<bool, StoreError> {
        let bytes = licence.envelope().encode();
        let id = licence.id();
        check_len(|| format!("licence {id}"), &bytes, max_licence_bytes())?;
        let txn = self.write()?;
        let new = {
            let mut table = self.open_write(&txn, LICENCES)?;
            table
                .insert(&id.0, bytes.as_slice())
                .map_err(|e| self.db("write licences", e))?
                .is_none()
        };
        self.commit(txn)?;
        Ok(new)
    }

    /// Forgets licence `id`; returns whether it was held.
    pub fn licence_remove(&self, id: &LicenceId) -> Result<bool, StoreError> {
        let txn = self.write()?;
        let removed = {
            let mut table = self.open_write(&txn, LICENCES)?;
            table
                .remove(&id.0)
                .map_err(|e| self.db("write licences", e))?
                .is_some()
        };
        self.commit(txn)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::{
        SecretKey, Timestamp,
        encryption::ContentKey,
        licence::{ContentLicence, LICENCE_FORMAT_VERSION, seal_content_key},
    };

    use super::*;
    use crate::store::testing::state_path;

    fn licence(seed: u8) -> VerifiedLicence {
        let publisher = SecretKey::from_seed(&[seed; 32]);
        let buyer = SecretKey::from_seed(&[seed.wrapping_add(1); 32]);
        let key = ContentKey::from_bytes([seed; 32]);
        let manifest_id = licet_proto::ManifestId([seed; 32]);
        let sealed_key = seal_content_key(&key, &manifest_id, &buyer.public_key()).unwrap();
        ContentLicence {
            version: LICENCE_FORMAT_VERSION,
            publisher: publisher.public_key(),
            manifest_id,
            key_id: key.id(),
            recipient: buyer.public_key(),
            issued_at: Timestamp(1_700_000_000),
            not_before: Timestamp(1_700_000_000),
            not_after: None,
            regions: Vec::new(),
            sealed_key,
        }
        .sign(&publisher, None)
        .unwrap()
    }

    #[test]
    fn licences_are_kept_by_id_across_a_reopen_and_removed() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let (a, b) = (licence(1), licence(2));
        assert!(store.licence_put(&a).unwrap());
        assert!(!store.licence_put(&a).unwrap(), "the same licence again");
        assert!(store.licence_put(&b).unwrap());
        drop(store);
        let store = Store::open(&path).unwrap();
        let ids: Vec<_> = store
            .licence_list()
            .unwrap()
            .iter()
            .map(|l| l.id())
            .collect();
        let mut expected = vec![a.id(), b.id()];
        expected.sort();
        assert_eq!(ids, expected);
        assert!(store.licence_remove(&a.id()).unwrap());
        assert!(!store.licence_remove(&a.id()).unwrap());
        let ids: Vec<_> = store
            .licence_list()
            .unwrap()
            .iter()
            .map(|l| l.id())
            .collect();
        assert_eq!(ids, vec![b.id()]);
    }

    #[test]
    fn a_damaged_licence_row_is_corrupt_naming_the_table_and_id() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let a = licence(3);
        store.licence_put(&a).unwrap();
        let mut bytes = a.envelope().encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let txn = store.write().unwrap();
        txn.open_table(LICENCES)
            .unwrap()
            .insert(&a.id().0, bytes.as_slice())
            .unwrap();
        txn.commit().unwrap();
        let error = store.licence_list().unwrap_err().to_string();
        assert!(error.contains("licences"), "{error}");
        assert!(error.contains(&a.id().to_string()), "{error}");
    }
}
