//! What identifies a remembered uuid: a digest of its studio and the uuid.

use sha2::{Digest as _, Sha256};

use crate::tenant::StudioId;

/// Bytes of a digest as stored on disk.
pub(super) const DIGEST_BYTES: usize = 16;

/// The first 128 bits of SHA-256 over `studio \0 uuid`. On disk all 128 bits are kept, so
/// equal digests mean the same uuid of the same studio, even for a sender choosing uuids. In
/// memory only the first 96 are (see `digest_set`).
// Ordered as its bytes on disk: a u128 read big-endian sorts like those bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct UuidDigest(u128);

impl UuidDigest {
    pub(super) fn of(studio: &StudioId, uuid: &str) -> UuidDigest {
        let mut hasher = Sha256::new();
        hasher.update(studio.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(uuid.as_bytes());
        UuidDigest::from_sha256(hasher.finalize().as_slice())
    }

    /// The digest of marks in the earliest layout, whose keys are `studio \0 uuid`.
    pub(super) fn of_studio_uuid_key(studio_uuid: &[u8]) -> UuidDigest {
        UuidDigest::from_sha256(Sha256::digest(studio_uuid).as_slice())
    }

    fn from_sha256(hash: &[u8]) -> UuidDigest {
        UuidDigest::read(hash).expect("SHA-256 is 32 bytes")
    }

    /// Reads the first [`DIGEST_BYTES`] of `bytes`, as written by [`UuidDigest::to_be_bytes`].
    pub(super) fn read(bytes: &[u8]) -> Option<UuidDigest> {
        let bytes: [u8; DIGEST_BYTES] = bytes.get(..DIGEST_BYTES)?.try_into().ok()?;
        Some(UuidDigest(u128::from_be_bytes(bytes)))
    }

    pub(super) fn to_be_bytes(self) -> [u8; DIGEST_BYTES] {
        self.0.to_be_bytes()
    }

    #[cfg(test)]
    pub(super) fn from_u128(n: u128) -> UuidDigest {
        UuidDigest(n)
    }
}
