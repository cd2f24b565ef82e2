//! The newest accepted catalog of each publisher and its signed head (invariant 6 of the
//! module docs: catalogs never go backwards).

use licet_proto::{
    PublicKey,
    catalog::{VerifiedCatalog, VerifiedCatalogHead},
    encoding,
};
use redb::ReadableTable;

use super::{
    Store, StoreError,
    schema::{CATALOG_HEADS, CATALOG_HEADS_NAME, CATALOGS, StoredCatalog, decode_catalog},
};

impl Store {
    /// Stores the catalog file `envelope` (its signed root and every part) as `publisher`'s
    /// newest accepted catalog, replacing the one stored. What is stored is the file as
    /// [`VerifiedCatalog::to_file_bytes`] writes it, so one catalog is always the same bytes.
    ///
    /// Refused ([`StoreError::CatalogRefused`]) unless it verifies as a catalog of `publisher`
    /// and its sequence is above the stored one's (an equal sequence must be the identical
    /// catalog, which is then a no-op), so the stored catalog never goes backwards. Trust and
    /// expiry are the policy's to check before this is called.
    pub fn catalog_put(&self, publisher: &PublicKey, envelope: &[u8]) -> Result<(), StoreError> {
        self.catalog_write(publisher, envelope, None)
    }

    /// [`Store::catalog_put`], and `head` beside the catalog in the same transaction; refused
    /// unless `head` is the publisher's signed head of exactly that catalog.
    pub fn catalog_put_with_head(
        &self,
        publisher: &PublicKey,
        envelope: &[u8],
        head: &[u8],
    ) -> Result<(), StoreError> {
        self.catalog_write(publisher, envelope, Some(head))
    }

    fn catalog_write(
        &self,
        publisher: &PublicKey,
        envelope: &[u8],
        head: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let refused = |reason: String| StoreError::CatalogRefused {
            publisher: *publisher,
            reason,
        };
        let catalog = VerifiedCatalog::from_bytes(envelope).map_err(|e| refused(e.to_string()))?;
        let sequence = catalog.catalog().sequence;
        if catalog.catalog().publisher != *publisher {
            return Err(refused(format!(
                "it is a catalog of publisher {}",
                catalog.catalog().publisher
            )));
        }
        if let Some(head) = head {
            let head = VerifiedCatalogHead::from_bytes(head)
                .map_err(|e| refused(format!("its head: {e}")))?;
            if !head.matches(&catalog) {
                return Err(refused(
                    "its head is the head of another catalog".to_owned(),
                ));
            }
        }
        let envelope = catalog.to_file_bytes();
        let stored = encoding::encode(&StoredCatalog {
            sequence,
            envelope: envelope.clone(),
        });
        let txn = self.write()?;
        {
            let mut table = self.open_write(&txn, CATALOGS)?;
            let old = table
                .get(publisher.as_bytes())
                .map_err(|e| self.db("read catalog", e))?
                .map(|value| decode_catalog(publisher, value.value()))
                .transpose()?;
            if let Some(old) = old {
                if sequence < old.sequence {
                    return Err(refused(format!(
                        "its sequence {sequence} is below the stored catalog's {}",
                        old.sequence
                    )));
                }
                if sequence == old.sequence {
                    return if old.envelope == envelope {
                        Ok(())
                    } else {
                        Err(refused(format!(
                            "it differs from the stored catalog with the same sequence {sequence}"
                        )))
                    };
                }
            }
            table
                .insert(publisher.as_bytes(), stored.as_slice())
                .map_err(|e| self.db("write catalog", e))?;
            let mut heads = self.open_write(&txn, CATALOG_HEADS)?;
            match head {
                Some(head) => heads.insert(publisher.as_bytes(), head),
                None => heads.remove(publisher.as_bytes()),
            }
            .map_err(|e| self.db("write catalog head", e))?;
        }
        self.commit(txn)
    }

    /// The stored head of each publisher's stored catalog, verified again as it is read. A head
    /// that no longer verifies is damage: [`StoreError::Corrupt`].
    pub fn catalog_heads(&self) -> Result<Vec<(PublicKey, VerifiedCatalogHead)>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, CATALOG_HEADS)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read catalog heads", e))? {
            let (key, value) = entry.map_err(|e| self.db("read catalog heads", e))?;
            let publisher = PublicKey(*key.value());
            let head = VerifiedCatalogHead::from_bytes(value.value()).map_err(|e| {
                StoreError::Corrupt {
                    table: CATALOG_HEADS_NAME,
                    key: publisher.to_string(),
                    reason: format!("the stored catalog head does not verify: {e}"),
                }
            })?;
            out.push((publisher, head));
        }
        Ok(out)
    }

    /// Every stored catalog envelope, by publisher (to verify and restore at start).
    pub fn catalogs(&self) -> Result<Vec<(PublicKey, Vec<u8>)>, StoreError> {
        let txn = self.read()?;
        let table = self.open_read(&txn, CATALOGS)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.db("read catalogs", e))? {
            let (key, value) = entry.map_err(|e| self.db("read catalogs", e))?;
            let publisher = PublicKey(*key.value());
            out.push((
                publisher,
                decode_catalog(&publisher, value.value())?.envelope,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;

    #[test]
    fn catalogs_round_trip_and_never_go_backwards() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let (a, b) = (secret(1).public_key(), secret(2).public_key());
        assert!(store.catalogs().unwrap().is_empty());
        let a5 = signed_catalog(1, 5, "five");
        let b1 = signed_catalog(2, 1, "one");
        store.catalog_put(&a, &a5.to_file_bytes()).unwrap();
        store.catalog_put(&b, &b1.to_file_bytes()).unwrap();
        let mut expected = vec![(a, a5.to_file_bytes()), (b, b1.to_file_bytes())];
        expected.sort_by_key(|(key, _)| *key);
        assert_eq!(store.catalogs().unwrap(), expected);

        // The identical catalog again is a no-op; a newer one replaces it.
        store.catalog_put(&a, &a5.to_file_bytes()).unwrap();
        let a6 = signed_catalog(1, 6, "six");
        store.catalog_put(&a, &a6.to_file_bytes()).unwrap();
        assert!(store.catalogs().unwrap().contains(&(a, a6.to_file_bytes())));

        // Older, or the same sequence with other bytes: refused, the newest kept.
        let err = store.catalog_put(&a, &a5.to_file_bytes()).unwrap_err();
        assert!(
            matches!(&err, StoreError::CatalogRefused { publisher, reason }
                if *publisher == a && reason.contains("below the stored catalog's 6")),
            "{err}"
        );
        let other6 = signed_catalog(1, 6, "another six");
        let err = store.catalog_put(&a, &other6.to_file_bytes()).unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
        assert!(store.catalogs().unwrap().contains(&(a, a6.to_file_bytes())));
    }

    #[test]
    fn a_catalog_that_does_not_verify_or_is_another_publishers_is_refused() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let a = secret(1).public_key();
        let err = store.catalog_put(&a, b"not a catalog").unwrap_err();
        assert!(matches!(err, StoreError::CatalogRefused { .. }), "{err}");

        let mut tampered = signed_catalog(1, 1, "x").to_file_bytes();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let err = store.catalog_put(&a, &tampered).unwrap_err();
        assert!(matches!(err, StoreError::CatalogRefused { .. }), "{err}");

        let of_b = signed_catalog(2, 1, "b");
        let err = store.catalog_put(&a, &of_b.to_file_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("it is a catalog of publisher"),
            "{err}"
        );
        assert!(store.catalogs().unwrap().is_empty());
    }

    #[test]
    fn a_head_is_stored_only_with_its_own_catalog_and_mirrors_persist() {
        let (_dir, path) = state_path();
        let store = Store::open(&path).unwrap();
        let a = secret(1).public_key();
        let a5 = signed_catalog(1, 5, "five");
        let a6 = signed_catalog(1, 6, "six");
        let head5 = a5.head(&secret(1)).unwrap();
        // The head of another catalog: refused, nothing stored.
        let err = store
            .catalog_put_with_head(&a, &a6.to_file_bytes(), head5.envelope_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("head of another catalog"), "{err}");
        assert!(store.catalogs().unwrap().is_empty());
        assert!(store.catalog_heads().unwrap().is_empty());
        let err = store
            .catalog_put_with_head(&a, &a5.to_file_bytes(), b"junk")
            .unwrap_err();
        assert!(err.to_string().contains("its head"), "{err}");

        store
            .catalog_put_with_head(&a, &a5.to_file_bytes(), head5.envelope_bytes())
            .unwrap();
        let heads: Vec<_> = store
            .catalog_heads()
            .unwrap()
            .into_iter()
            .map(|(publisher, head)| (publisher, head.envelope_bytes().to_vec()))
            .collect();
        assert_eq!(heads, vec![(a, head5.envelope_bytes().to_vec())]);
        // A catalog stored without a head drops the stale one.
        store.catalog_put(&a, &a6.to_file_bytes()).unwrap();
        assert!(store.catalog_heads().unwrap().is_empty());

        store.mirror_set(&a, true).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.mirrors().unwrap(), vec![a]);
        store.trust_remove(&a).unwrap();
        assert!(
            store.mirrors().unwrap().is_empty(),
            "untrusting stops mirroring"
        );
    }
}
