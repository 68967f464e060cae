//! A file attached to a message: what readers see before the bytes arrive.
//!
//! Stored as a map under the message's `attachment` key:
//! `hash` (hex BLAKE3), `size` (uint bytes), `mime` (str, sniffed by the
//! sender), `name` (str), `preview` (bytes, optional: a small thumbnail for
//! images), `key` (32 bytes, optional: the [`FileKey`] the blob is encrypted
//! with). The bytes themselves travel as an iroh-blobs blob named by `hash`:
//! the ciphertext when there is a key, the file itself in a message written
//! before files were encrypted.

use automerge::{transaction::Transactable, ObjId, ObjType, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::{file_key::FileKey, ids::BlobHash};

/// Longest file name kept, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest MIME type kept, in bytes.
pub const MAX_MIME_BYTES: usize = 127;
/// Largest inline preview, in bytes (a thumbnail of a few KiB).
pub const MAX_PREVIEW_BYTES: usize = 16 * 1024;

pub(crate) const ATTACHMENT: &str = "attachment";
const HASH: &str = "hash";
const SIZE: &str = "size";
const MIME: &str = "mime";
const NAME: &str = "name";
const PREVIEW: &str = "preview";
pub(crate) const KEY: &str = "key";

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// BLAKE3 hash of the blob (the ciphertext, when `key` is set): fetch
    /// it as an iroh-blobs blob.
    pub hash: BlobHash,
    /// Size in bytes (the file's and its blob's: encryption keeps it).
    pub size: u64,
    /// MIME type, sniffed from the content by the sender.
    pub mime: String,
    /// File name (no directories).
    pub name: String,
    /// A small image preview (JPEG), for images.
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<u8>,
    /// The key the blob is encrypted with; `None` for a file sent before
    /// files were encrypted, whose blob is the file itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<FileKey>,
}

impl Attachment {
    /// Checks the limits a receiver enforces, so a sender learns early.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > MAX_FILE_NAME_BYTES {
            return Err(format!(
                "file name must be 1 to {MAX_FILE_NAME_BYTES} bytes, got {}",
                self.name.len()
            ));
        }
        if self.name.contains(['/', '\\', '\0']) {
            return Err("file name must not contain path separators".into());
        }
        if self.mime.is_empty() || self.mime.len() > MAX_MIME_BYTES {
            return Err(format!("MIME type must be 1 to {MAX_MIME_BYTES} bytes"));
        }
        if self.preview.len() > MAX_PREVIEW_BYTES {
            return Err(format!(
                "preview is {} bytes; the limit is {MAX_PREVIEW_BYTES}",
                self.preview.len()
            ));
        }
        Ok(())
    }

    pub(crate) fn write<T: Transactable>(
        &self,
        tx: &mut T,
        message: &ObjId,
    ) -> Result<(), automerge::AutomergeError> {
        let obj = tx.put_object(message, ATTACHMENT, ObjType::Map)?;
        tx.put(&obj, HASH, self.hash.to_string())?;
        tx.put(&obj, SIZE, ScalarValue::Uint(self.size))?;
        tx.put(&obj, MIME, self.mime.as_str())?;
        tx.put(&obj, NAME, self.name.as_str())?;
        if !self.preview.is_empty() {
            tx.put(&obj, PREVIEW, ScalarValue::Bytes(self.preview.clone()))?;
        }
        if let Some(key) = &self.key {
            tx.put(&obj, KEY, ScalarValue::Bytes(key.as_bytes().to_vec()))?;
        }
        Ok(())
    }

    /// Reads the attachment of a message map; `None` when absent or malformed
    /// (a malformed attachment is ignored, the message is still shown).
    pub(crate) fn read<D: ReadDoc>(doc: &D, message: &ObjId) -> Option<Self> {
        let (Value::Object(ObjType::Map), obj) = doc.get(message, ATTACHMENT).ok()?? else {
            return None;
        };
        let scalar = |key: &str| match doc.get(&obj, key).ok()?? {
            (Value::Scalar(s), _) => Some(s.into_owned()),
            _ => None,
        };
        let text = |key: &str| match scalar(key)? {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        };
        let hash = text(HASH)?.parse().ok()?;
        let size = match scalar(SIZE)? {
            ScalarValue::Uint(n) => n,
            ScalarValue::Int(n) => u64::try_from(n).ok()?,
            _ => return None,
        };
        let preview = match scalar(PREVIEW) {
            Some(ScalarValue::Bytes(b)) => b,
            _ => Vec::new(),
        };
        // Absent: a file from before encryption, readable as it is. Present
        // but not 32 bytes (refused on receipt, so never from a peer): the
        // file cannot be read, so the attachment is malformed.
        let key = match scalar(KEY) {
            None => None,
            Some(ScalarValue::Bytes(b)) => Some(FileKey::from_slice(&b)?),
            Some(_) => return None,
        };
        let attachment = Self {
            hash,
            size,
            mime: text(MIME)?,
            name: text(NAME)?,
            preview,
            key,
        };
        attachment.validate().ok()?;
        Some(attachment)
    }
}
