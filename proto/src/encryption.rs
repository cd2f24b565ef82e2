//! Encrypted releases: a release's content key, the key id a manifest states, and the chunked
//! AEAD that turns each file into ciphertext the network carries like any other content.
//!
//! ```text
//! content key   32 random bytes, one per release, never derived from the content
//! key id        SHA-256("licet/v1/content-key-id" ‖ content key)
//! file key      HKDF-SHA256(salt = "licet/v1/file-key", ikm = content key, info = file index u64 BE)
//! segment i     plaintext bytes [i·s, min((i+1)·s, size)), s = chunk_size − 16
//! ciphertext i  ChaCha20-Poly1305(file key, nonce(i, last), aad = "", segment i) = segment ‖ tag
//! nonce(i, l)   i as u64 big-endian ‖ 0x00 0x00 0x00 ‖ (0x01 if l, the file's last segment, else 0x00)
//! ```
//!
//! Invariants:
//! - Ciphertext chunk *i* of a file is exactly merkle chunk *i* of the manifest (a full segment
//!   plus its tag is `chunk_size` bytes), so every chunk decrypts on its own, and the merkle tree,
//!   transfer and storage are those of any release.
//! - An empty file is one empty segment: 16 bytes of tag, so even its absence is detected.
//! - The nonce is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): the segment
//!   counter and a last-segment flag under a per-file key. Reordering or swapping chunks changes
//!   the counter, truncating moves the flag, and moving a chunk to another file changes the key;
//!   each makes [`FileCipher::open_segment`] fail.
//! - Each file key is used for one file of one release only, so a (key, nonce) pair never repeats.

use std::fmt;

use chacha20poly1305::{
    AeadInOut as _, ChaCha20Poly1305, KeyInit as _, Nonce, Tag,
    aead::{self, inout::InOutBuf},
};
use serde::{Deserialize, Serialize};

pub use crate::ids::ContentKeyId;
use crate::ids::sha256;

/// Bytes an AEAD tag adds to each segment.
pub const TAG_BYTES: u32 = 16;

/// How a release's files are encrypted. Append-only: never reorder or remove a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncryptionAlgorithm {
    /// ChaCha20-Poly1305 (RFC 8439) in the STREAM construction of this module, with per-file
    /// keys from HKDF-SHA256.
    ChaCha20Poly1305Stream,
}

impl fmt::Display for EncryptionAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncryptionAlgorithm::ChaCha20Poly1305Stream => "chacha20-poly1305-stream",
        })
    }
}

/// A release's secret content key. Zeroed on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; 32]);

impl Drop for ContentKey {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentKey(id {})", self.id())
    }
}

/// Why a content key file's text is not a key.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("it is not a Licet content key: {0}")]
pub struct ContentKeyTextError(&'static str);

/// The first line of a content key file.
const KEY_FILE_HEADER: &str = "# licet content key";

impl ContentKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<ContentKey, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(ContentKey(key))
    }

    /// The key with these bytes (tests, fixtures, and keys unsealed from a licence).
    pub fn from_bytes(bytes: [u8; 32]) -> ContentKey {
        ContentKey(bytes)
    }

    /// The raw key (to seal it to a buyer).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key's id.
    pub fn id(&self) -> ContentKeyId {
        ContentKeyId(sha256(&[b"licet/v1/content-key-id", &self.0]))
    }

    /// The text of a key file: a comment line naming what it is, then the key in hex.
    pub fn to_file_text(&self) -> String {
        format!(
            "{KEY_FILE_HEADER} (id {}): keep it secret\n{}\n",
            self.id(),
            hex::encode(self.0)
        )
    }

    /// Parses [`ContentKey::to_file_text`]'s text.
    pub fn from_file_text(text: &str) -> Result<ContentKey, ContentKeyTextError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        match lines.next() {
            Some(first) if first.starts_with(KEY_FILE_HEADER) => {}
            _ => {
                return Err(ContentKeyTextError(
                    "its first line is not \"# licet content key\"",
                ));
            }
        }
        let Some(hex_line) = lines.next() else {
            return Err(ContentKeyTextError("the key line is missing"));
        };
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_line, &mut key)
            .map_err(|_| ContentKeyTextError("the key line is not 64 hex characters"))?;
        if lines.next().is_some() {
            return Err(ContentKeyTextError("text follows the key line"));
        }
        Ok(ContentKey(key))
    }

    /// The cipher of file number `file_index` (its position in the manifest) of this release.
    pub fn file_cipher(&self, file_index: u64, chunk_size: u32) -> FileCipher {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"licet/v1/file-key"), &self.0);
        let mut file_key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 · 32.
        if hkdf
            .expand(&file_index.to_be_bytes(), &mut file_key)
            .is_err()
        {
            unreachable!("HKDF-SHA256 expands to 32 bytes");
        }
        let aead = ChaCha20Poly1305::new(&file_key.into());
        file_key.fill(0);
        FileCipher {
            aead,
            segment_bytes: segment_bytes(chunk_size),
        }
    }
}

/// Plaintext bytes per segment at `chunk_size` (the chunk minus its tag).
pub fn segment_bytes(chunk_size: u32) -> u64 {
    u64::from(chunk_size.saturating_sub(TAG_BYTES).max(1))
}

/// How many segments a file of `plaintext_size` bytes has (an empty file has one).
pub fn segment_count(plaintext_size: u64, chunk_size: u32) -> u64 {
    plaintext_size.div_ceil(segment_bytes(chunk_size)).max(1)
}

/// The size of a file's ciphertext: its plaintext plus one tag per segment.
pub fn ciphertext_size(plaintext_size: u64, chunk_size: u32) -> u64 {
    plaintext_size.saturating_add(segment_count(plaintext_size, chunk_size) * u64::from(TAG_BYTES))
}

/// A segment failed to decrypt: its bytes, position or key are not the ones encrypted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The tag does not verify.
    #[error(
        "chunk {index} does not decrypt: it was altered, moved, cut short, or the key is another release's"
    )]
    NotAuthentic {
        /// The segment's index.
        index: u64,
    },
    /// Shorter than a tag, or longer than a segment plus its tag.
    #[error("chunk {index} is {len} bytes, which no encrypted chunk is")]
    BadLength {
        /// The segment's index.
        index: u64,
        /// Its length.
        len: usize,
    },
}

/// Encrypts and decrypts the segments of one file of one release.
pub struct FileCipher {
    aead: ChaCha20Poly1305,
    segment_bytes: u64,
}

fn nonce(index: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce.into()
}

impl FileCipher {
    /// Plaintext bytes per full segment.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Encrypts segment `index` in place (`buffer` holds at most [`Self::segment_bytes`]) and
    /// appends its tag. `last` says whether it is the file's last segment.
    pub fn seal_segment(&self, index: u64, last: bool, buffer: &mut Vec<u8>) {
        let tag = match self.aead.encrypt_inout_detached(
            &nonce(index, last),
            b"",
            InOutBuf::from(buffer.as_mut_slice()),
        ) {
            Ok(tag) => tag,
            // ChaCha20-Poly1305 refuses only messages over 256 GiB; segments are at most 16 MiB.
            Err(aead::Error) => unreachable!("a segment is far below ChaCha20's message limit"),
        };
        buffer.extend_from_slice(&tag);
    }

    /// Decrypts ciphertext chunk `index` in place, leaving the plaintext segment in `buffer`.
    pub fn open_segment(
        &self,
        index: u64,
        last: bool,
        buffer: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        let len = buffer.len();
        let tag_bytes = TAG_BYTES as usize;
        if len < tag_bytes || (len - tag_bytes) as u64 > self.segment_bytes {
            return Err(OpenError::BadLength { index, len });
        }
        let split = len - tag_bytes;
        let tag =
            Tag::try_from(&buffer[split..]).map_err(|_| OpenError::BadLength { index, len })?;
        buffer.truncate(split);
        self.aead
            .decrypt_inout_detached(
                &nonce(index, last),
                b"",
                InOutBuf::from(buffer.as_mut_slice()),
                &tag,
            )
            .map_err(|_| OpenError::NotAuthentic { index })
    }

    /// Encrypts a whole file held in memory (tests and small files).
    pub fn seal_all(&self, plaintext: &[u8]) -> Vec<u8> {
        let segment = self.segment_bytes as usize;
        let count = plaintext.len().div_ceil(segment).max(1);
        let mut out = Vec::with_capacity(plaintext.len() + count * TAG_BYTES as usize);
        let mut buffer = Vec::with_capacity(segment + TAG_BYTES as usize);
        for index in 0..count {
            let start = index * segment;
            let end = (start + segment).min(plaintext.len());
            buffer.clear();
            buffer.extend_from_slice(&plaintext[start.min(end)..end]);
            self.seal_segment(index as u64, index + 1 == count, &mut buffer);
            out.extend_from_slice(&buffer);
        }
        out
    }

    /// Decrypts a whole file held in memory whose plaintext is `plaintext_size` bytes.
    pub fn open_all(&self, ciphertext: &[u8], plaintext_size: u64) -> Result<Vec<u8>, OpenError> {
        let chunk = self.segment_bytes as usize + TAG_BYTES as usize;
        let count = plaintext_size.div_ceil(self.segment_bytes).max(1);
        let mut out = Vec::new();
        let mut buffer = Vec::with_capacity(chunk);
        for index in 0..count {
            let start = (index as usize).saturating_mul(chunk);
            let end = start.saturating_add(chunk).min(ciphertext.len());
            buffer.clear();
            buffer.extend_from_slice(ciphertext.get(start..end).unwrap_or_default());
            self.open_segment(index, index + 1 == count, &mut buffer)?;
            out.extend_from_slice(&buffer);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_align_ciphertext_chunks_with_merkle_chunks() {
        let cs = 16 * 1024;
        let seg = u64::from(cs - TAG_BYTES);
        assert_eq!(segment_count(0, cs), 1);
        assert_eq!(ciphertext_size(0, cs), 16);
        assert_eq!(ciphertext_size(1, cs), 17);
        assert_eq!(ciphertext_size(seg, cs), u64::from(cs));
        assert_eq!(ciphertext_size(seg + 1, cs), u64::from(cs) + 17);
        assert_eq!(segment_count(3 * seg, cs), 3);
    }

    #[test]
    fn key_file_text_round_trips_and_names_its_faults() {
        let key = ContentKey::from_bytes([9; 32]);
        let text = key.to_file_text();
        assert!(text.contains(&key.id().to_string()), "{text}");
        assert_eq!(ContentKey::from_file_text(&text).unwrap(), key);
        let err = ContentKey::from_file_text("hello").unwrap_err().to_string();
        assert!(err.contains("first line"), "{err}");
        let err = ContentKey::from_file_text("# licet content key\nzz")
            .unwrap_err()
            .to_string();
        assert!(err.contains("64 hex"), "{err}");
    }
}
