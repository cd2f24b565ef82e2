//! The trust store and the mirrored publishers (`trust` and `mirrors` tables).

use licet_proto::{PublicKey, encoding, policy::TrustedPublisher};
use redb::ReadableTable;

use super::{
    Store, StoreError,
    error::check_len,
    schema::{MAX_TRUST_VALUE_BYTES, MIRRORS, TRUST, TRUST_NAME, decode_value},
};

impl Store {
    /// Every trusted publisher, by key.
    pub fn trust_list(&self) -> Result<Vec<(PublicKey, TrustedPublisher)>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, TRUST)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read trust", e))? {
            let (key, value) = entry.map_err(|e| self.db("read trust", e))?;
            let publisher = PublicKey(*key.value());
            let settings = decode_value(
                TRUST_NAME,
                || publisher.to_string(),
                value.value(),
                MAX_TRUST_VALUE_BYTES,
            )?;
            out.push((publisher, settings));
        }
        Ok(out)
    }

    /// Trusts `publisher` with `settings`, replacing its settings if already trusted.
    pub fn trust_put(
        &self,
        publisher: &PublicKey,
        settings: &TrustedPublisher,
    ) -> Result<(), StoreError> {
        let bytes = encoding::encode(settings);
        check_len(
            || format!("trusted publisher {publisher}"),
            &bytes,
            MAX_TRUST_VALUE_BYTES,
        )?;
        let txn = self.write()?;
        {
            let mut table = self.open_write(&txn, TRUST)?;
            table
                .insert(publisher.as_bytes(), bytes.as_slice())
                .map_err(|e| self.db("write trust", e))?;
        }
        self.commit(txn)
    }

    /// Stops trusting `publisher` (and mirroring it); returns whether it was trusted.
    pub fn trust_remove(&self, publisher: &PublicKey) -> Result<bool, StoreError> {
        let txn = self.write()?;
        let removed = {
            let mut table = self.open_write(&txn, TRUST)?;
            self.open_write(&txn, MIRRORS)?
                .remove(publisher.as_bytes())
                .map_err(|e| self.db("write mirrors", e))?;
            table
                .remove(publisher.as_bytes())
                .map_err(|e| self.db("write trust", e))?
                .is_some()
        };
        self.commit(txn)?;
        Ok(removed)
    }

    /// Records whether the operator mirrors `publisher`'s catalog (fetches and seeds all of it).
    pub fn mirror_set(&self, publisher: &PublicKey, mirror: bool) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut table = self.open_write(&txn, MIRRORS)?;
            if mirror {
                table.insert(publisher.as_bytes(), [].as_slice())
            } else {
                table.remove(publisher.as_bytes())
            }
            .map_err(|e| self.db("write mirrors", e))?;
        }
        self.commit(txn)
    }

    /// The publishers whose catalogs are mirrored.
    pub fn mirrors(&self) -> Result<Vec<PublicKey>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, MIRRORS)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read mirrors", e))? {
            let (key, _) = entry.map_err(|e| self.db("read mirrors", e))?;
            out.push(PublicKey(*key.value()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;

    #[test]
    fn trust_round_trips() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let (a, b) = (secret(1).public_key(), secret(2).public_key());
        let plain = TrustedPublisher::default();
        let named = TrustedPublisher {
            name: Some("Example Records".into()),
            require_catalog: true,
        };
        store.trust_put(&a, &plain).unwrap();
        store.trust_put(&b, &named).unwrap();
        let mut expected = vec![(a, plain.clone()), (b, named.clone())];
        expected.sort_by_key(|(key, _)| *key);
        assert_eq!(store.trust_list().unwrap(), expected);

        store.trust_put(&a, &named).unwrap();
        assert!(store.trust_list().unwrap().contains(&(a, named.clone())));
        assert_eq!(store.trust_list().unwrap().len(), 2);

        assert!(store.trust_remove(&a).unwrap());
        assert!(!store.trust_remove(&a).unwrap());
        assert_eq!(store.trust_list().unwrap(), vec![(b, named)]);
    }

    #[test]
    fn an_oversize_trust_entry_is_refused() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let key = secret(1).public_key();
        let huge = TrustedPublisher {
            name: Some("n".repeat(MAX_TRUST_VALUE_BYTES)),
            require_catalog: false,
        };
        let err = store.trust_put(&key, &huge).unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid { item, .. } if item.contains(&key.to_string())),
            "{err}"
        );
        assert!(store.trust_list().unwrap().is_empty());
    }
}
