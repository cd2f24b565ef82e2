//! Paid releases at the node: the licences held (`/v1/licences`) and the plaintext of a
//! complete encrypted release written into the user's folder (`/v1/content/{id}/open`).
//!
//! An encrypted release downloads, verifies and seeds as ciphertext like any content, into a
//! folder of the node's (`sealed/ID` in the data directory: the user never sees ciphertext
//! under a file's name); `get` then asks for its plaintext, which needs a licence held that
//! opens it here now ([`crate::licences`]), asked again on every call.

use std::path::PathBuf;

use licet_proto::{LicenceId, ManifestId, licence::VerifiedLicence, policy::Territory};

use super::{
    Node,
    api::refusal_text,
    api_errors::{blocking, store_error, to_api_refusal},
};
use crate::{
    content::{opening, output_folder},
    contract::{ApiError, ApiErrorKind, LicenceEntry, LicenceListReply, OpenReply, OpenRequest},
    licences::{LicenceRefusal, NoKey},
    store::RecordState,
};

/// The folder of the data directory where paid releases' ciphertext goes, one folder per
/// manifest id.
const SEALED_DIR: &str = "sealed";

impl Node {
    /// Where the ciphertext of the paid release `id` is downloaded.
    pub(crate) fn sealed_dir(&self, id: &ManifestId) -> PathBuf {
        self.inner.data_dir.join(SEALED_DIR).join(id.to_string())
    }

    /// `POST /v1/content/{id}/open`.
    pub(super) async fn open_release(
        &self,
        id: ManifestId,
        request: OpenRequest,
    ) -> Result<OpenReply, ApiError> {
        let item = self.item(&id).ok_or_else(|| {
            ApiError::new(
                ApiErrorKind::NotFound,
                format!("manifest {id} is not held here"),
            )
        })?;
        let manifest = item.manifest().clone();
        if manifest.manifest().encryption.is_none() {
            return Err(ApiError::new(
                ApiErrorKind::BadRequest,
                format!(
                    "release {id} is not encrypted: its files are the content, in {}",
                    item.dir().display()
                ),
            ));
        }
        if item.state() != RecordState::Complete {
            return Err(ApiError::new(
                ApiErrorKind::Conflict,
                format!(
                    "release {id} is not complete here yet: its plaintext is written once every \
                     chunk is held and verified"
                ),
            ));
        }
        if let Err(refusal) = self.policy_check(&manifest, Territory::Holder) {
            return Err(ApiError::refused(
                ApiErrorKind::Refused,
                format!("release {id} is refused: {}", refusal_text(&refusal)),
                to_api_refusal(refusal),
            ));
        }
        let output_dir = self.user_output_dir(&request.output_dir).await?;
        {
            let others = self.inner.items.all();
            let others = others
                .iter()
                .map(|other| (other.id(), other.dir(), other.manifest().manifest()));
            if let Some(overlap) =
                output_folder::find_overlap(&output_dir, manifest.manifest(), others)
            {
                return Err(ApiError::new(ApiErrorKind::Conflict, overlap.to_string()));
            }
        }
        let licences = self.inner.licences.clone();
        let policy = self.inner.policy.clone();
        let opening_manifest = manifest.clone();
        let opening = blocking(move || licences.content_key(&opening_manifest, &policy))
            .await?
            .map_err(|e| match e {
                NoKey::Store(e) => store_error(e),
                e => ApiError::new(
                    ApiErrorKind::Refused,
                    format!("{:?}: {e}", manifest.manifest().title),
                ),
            })?;
        let sealed = item.dir().to_path_buf();
        let out = output_dir.clone();
        let replace = request.replace;
        // One opening at a time: two into one folder would write the same partial files.
        let _one_at_a_time = self.inner.opening.lock().await;
        let opened = blocking(move || {
            opening::write_plaintext(&sealed, &manifest, &opening.key, &out, replace)
        })
        .await?
        .map_err(|e| {
            let kind = if e.is_conflict() {
                ApiErrorKind::Conflict
            } else if e.is_not_authentic() {
                ApiErrorKind::BadRequest
            } else {
                ApiErrorKind::Internal
            };
            ApiError::new(kind, e.to_string())
        })?;
        tracing::info!(%id, licence = %opening.licence, output = %output_dir.display(),
            written = opened.written, kept = opened.kept, "paid release opened");
        Ok(OpenReply {
            manifest_id: id,
            output_dir,
            licence_id: opening.licence.to_string(),
            files_written: opened.written,
            files_kept: opened.kept,
            bytes: opened.bytes,
        })
    }

    /// `GET /v1/licences`.
    pub(super) async fn licences_held(&self) -> Result<LicenceListReply, ApiError> {
        let licences = self.inner.licences.clone();
        let held = blocking(move || licences.list())
            .await?
            .map_err(store_error)?;
        Ok(LicenceListReply {
            node_key: self.inner.licences.node_key(),
            licences: held.iter().map(|l| self.licence_entry(l)).collect(),
        })
    }

    /// `POST /v1/licences`.
    pub(super) async fn licence_keep(&self, bytes: Vec<u8>) -> Result<LicenceEntry, ApiError> {
        let licences = self.inner.licences.clone();
        let policy = self.inner.policy.clone();
        let items = self.inner.items.clone();
        let added = blocking(move || {
            let licence = match VerifiedLicence::from_bytes(&bytes) {
                Ok(licence) => licence,
                Err(e) => return Ok(Err(LicenceRefusal::Invalid(e))),
            };
            let manifest = items
                .get(&licence.licence().manifest_id)
                .map(|item| item.manifest().clone());
            licences.add(licence, &policy, manifest.as_ref())
        })
        .await?
        .map_err(store_error)?;
        match added {
            Ok((licence, new)) => {
                tracing::info!(id = %licence.id(), release = %licence.licence().manifest_id,
                    new, "licence added");
                Ok(self.licence_entry(&licence))
            }
            Err(refusal) => {
                let kind = match refusal {
                    LicenceRefusal::Invalid(licet_proto::licence::LicenceError::Envelope(_))
                    | LicenceRefusal::Invalid(licet_proto::licence::LicenceError::Body(_)) => {
                        ApiErrorKind::BadRequest
                    }
                    _ => ApiErrorKind::Refused,
                };
                Err(ApiError::new(
                    kind,
                    format!("the licence is refused: {refusal}"),
                ))
            }
        }
    }

    /// `DELETE /v1/licences/{id}`.
    pub(super) async fn licence_forget(&self, id: LicenceId) -> Result<(), ApiError> {
        let licences = self.inner.licences.clone();
        let removed = blocking(move || licences.remove(&id))
            .await?
            .map_err(store_error)?;
        if removed {
            Ok(())
        } else {
            Err(ApiError::new(
                ApiErrorKind::NotFound,
                format!("licence {id} is not held here"),
            ))
        }
    }

    /// A licence as the API shows it, with whether it opens its release here now.
    fn licence_entry(&self, licence: &VerifiedLicence) -> LicenceEntry {
        let body = licence.licence();
        let item = self.item(&body.manifest_id);
        let manifest = item.as_ref().map(|i| i.manifest());
        let refused = self
            .inner
            .licences
            .standing(licence, &self.inner.policy, manifest)
            .err()
            .map(|e| e.to_string());
        LicenceEntry {
            id: licence.id().to_string(),
            publisher: body.publisher,
            signer: licence.envelope().signer,
            manifest_id: body.manifest_id,
            title: manifest.map(|m| m.manifest().title.clone()),
            issued_at: body.issued_at.to_string(),
            not_before: body.not_before.to_string(),
            not_after: body.not_after.map(|t| t.to_string()),
            regions: body.regions.iter().map(|r| r.to_string()).collect(),
            refused,
        }
    }
}
