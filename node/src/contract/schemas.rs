//! JSON schemas of the `licet-proto` types that the control API's bodies carry, for the API's
//! OpenAPI description (`api::openapi`). `licet-proto` holds only what two parties must agree
//! on and names no OpenAPI types, so each of its types the API shows is described here, as
//! `serde_json` writes it; the contract's fields of those types point here with
//! `#[schema(value_type = …)]`.
//!
//! Invariant: each schema accepts what `serde_json` writes for its type (the tests validate
//! written values against it), and names it as the type is named (`PublicKey`, not the marker).

use std::borrow::Cow;

use licet_proto::policy::RefusalReason;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr,
        schema::{ObjectBuilder, Schema, Type},
    },
};

/// 32 bytes as 64 lowercase hex characters: how keys and ids are written in JSON.
fn hex_32_bytes(description: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9a-f]{64}$"))
        .description(Some(description))
        .examples([example])
        .into()
}

/// The schema of [`licet_proto::PublicKey`]: an ed25519 public key in lowercase hex.
pub struct PublicKeyHex;

impl PartialSchema for PublicKeyHex {
    fn schema() -> RefOr<Schema> {
        hex_32_bytes(
            "An ed25519 public key (a publisher's or a delegate's): 32 bytes as 64 lowercase \
             hex characters.",
            "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
        )
    }
}

impl ToSchema for PublicKeyHex {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PublicKey")
    }
}

/// The schema of [`licet_proto::ManifestId`]: a manifest id in lowercase hex.
pub struct ManifestIdHex;

impl PartialSchema for ManifestIdHex {
    fn schema() -> RefOr<Schema> {
        hex_32_bytes(
            "A manifest id (SHA-256 of the signed manifest's body): 32 bytes as 64 lowercase hex \
             characters, as in a share link `licet:<id>`.",
            "8cb9717a657dec3664b5c8d0e1f9a1b2c3d4e5f60718293a4b5c6d7e8f901234",
        )
    }
}

impl ToSchema for ManifestIdHex {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ManifestId")
    }
}

/// The schema of [`RefusalReason`]: one of its variants' names, taken from
/// [`RefusalReason::ALL`] as `serde_json` writes them, so a new reason is described at once.
pub struct RefusalReasonName;

impl PartialSchema for RefusalReasonName {
    fn schema() -> RefOr<Schema> {
        let mut description = String::from(
            "Why the trust policy refuses content (append-only: new reasons may be added):",
        );
        let mut names = Vec::with_capacity(RefusalReason::ALL.len());
        for reason in RefusalReason::ALL {
            // A unit variant is written as its name; anything else would be a bug shown here.
            let name = serde_json::to_value(reason).unwrap_or_default();
            description.push_str(&format!("\n- `{}`: {}", name, reason.describe()));
            names.push(name);
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .description(Some(description))
            .into()
    }
}

impl ToSchema for RefusalReasonName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RefusalReason")
    }
}

#[cfg(test)]
mod tests {
    use licet_proto::{ManifestId, SecretKey};
    use serde_json::{Value, json};

    use super::*;

    fn validator<S: PartialSchema>() -> jsonschema::Validator {
        let schema = serde_json::to_value(S::schema()).unwrap();
        jsonschema::draft202012::new(&schema).unwrap()
    }

    #[test]
    fn keys_and_ids_as_written_are_valid_and_other_text_is_not() {
        let key = validator::<PublicKeyHex>();
        let written = serde_json::to_value(SecretKey::from_seed(&[7; 32]).public_key()).unwrap();
        assert!(key.is_valid(&written), "{written}");
        let id = validator::<ManifestIdHex>();
        let written = serde_json::to_value(ManifestId([0xab; 32])).unwrap();
        assert!(id.is_valid(&written), "{written}");
        for wrong in [
            json!("AB".repeat(32)),
            json!("ab".repeat(31)),
            json!("ab".repeat(33)),
            json!(7),
        ] {
            assert!(!key.is_valid(&wrong), "{wrong}");
            assert!(!id.is_valid(&wrong), "{wrong}");
        }
    }

    #[test]
    fn every_refusal_reason_as_written_is_valid_and_others_are_not() {
        let schema = validator::<RefusalReasonName>();
        for reason in RefusalReason::ALL {
            let written = serde_json::to_value(reason).unwrap();
            assert!(schema.is_valid(&written), "{written}");
        }
        assert!(!schema.is_valid(&Value::from("expired")));
        assert!(!schema.is_valid(&Value::from("NoSuchReason")));
        let text = serde_json::to_string(&RefusalReasonName::schema()).unwrap();
        assert!(text.contains("licence window has ended"), "{text}");
    }
}
