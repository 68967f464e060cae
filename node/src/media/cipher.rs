//! Files sent in chats are stored and travel encrypted: each is encrypted
//! under its own random [`FileKey`] as it is imported, so the blob store,
//! every peer serving it and every relay caching it hold only ciphertext;
//! the key travels inside the message. The receiver decrypts only when the
//! file is written out for the user ([`export_opened`]). The cipher keeps
//! offsets and sizes (see `meshchat_crdt::FileKey`), so downloads stream,
//! verify and resume exactly as for any blob.
//!
//! Files shared with a ticket (`share.rs`) and public blobs (profile
//! pictures) are imported as they are: a ticket is for anyone who holds it.

use std::path::Path;

use bytes::Bytes;
use iroh_blobs::Hash;
use meshchat_crdt::FileKey;
use tokio::io::AsyncReadExt;

use super::{service::Blobs, BlobError};

/// Bytes read, encrypted and handed to the store at a time.
const CHUNK: usize = 64 * 1024;
/// Bytes decrypted in place at a time when a file is written out.
const IN_PLACE_CHUNK: usize = 1024 * 1024;

/// Imports the file at `path` encrypted under a fresh key, keeps it under an
/// attachment tag, and returns the blob's hash (of the ciphertext), its
/// size (the file's) and the key. The plaintext never enters the store.
pub(crate) async fn import_sealed(
    blobs: &Blobs,
    path: &Path,
) -> Result<(Hash, u64, FileKey), BlobError> {
    let path = blobs.readable_file(path).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| BlobError::File(format!("{}: {e}", path.display())))?;
    let key = FileKey::generate();
    let shown = path.display().to_string();
    let chunks = futures::stream::unfold(Some((file, 0u64)), move |state| {
        let shown = shown.clone();
        async move {
            let (mut file, offset) = state?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let next = offset + n as u64;
                    match key.apply(offset, &mut buf) {
                        Ok(()) => Some((Ok(Bytes::from(buf)), Some((file, next)))),
                        Err(e) => Some((Err(std::io::Error::other(e)), None)),
                    }
                }
                Err(e) => Some((
                    Err(std::io::Error::new(e.kind(), format!("{shown}: {e}"))),
                    None,
                )),
            }
        }
    });
    let temp = blobs
        .store()
        .blobs()
        .add_stream(chunks)
        .await
        .temp_tag()
        .await
        .map_err(|e| BlobError::File(format!("importing {}: {e}", path.display())))?;
    let hash = temp.hash();
    blobs.keep(hash).await?;
    let size = blobs
        .complete_size(hash)
        .await?
        .ok_or_else(|| BlobError::Store(format!("blob {hash} incomplete after import")))?;
    // The file may have grown since it was measured.
    blobs.check_size(size)?;
    Ok((hash, size, key))
}

/// Writes the plaintext of the complete blob `hash`, encrypted under `key`,
/// to `path` (a fresh name, `save.rs` picks it): iroh-blobs exports the
/// ciphertext (a copy, or a copy-on-write clone), then it is decrypted in
/// place, a MiB at a time. Reading the store through its `BlobReader`
/// instead costs a round trip per read and ran at a tenth of the speed
/// (BENCHMARKS.md, "Saving"). Not fsynced, like iroh-blobs' own export: the
/// verified bytes stay in the store.
pub(crate) async fn export_opened(
    blobs: &Blobs,
    hash: Hash,
    key: &FileKey,
    path: &Path,
) -> std::io::Result<u64> {
    let size = blobs
        .store()
        .blobs()
        .export(hash, path)
        .finish()
        .await
        .map_err(std::io::Error::other)?;
    let (key, target) = (*key, path.to_path_buf());
    let opened = tokio::task::spawn_blocking(move || decrypt_in_place(&target, &key))
        .await
        .map_err(std::io::Error::other)?;
    opened?;
    Ok(size)
}

/// Applies `key`'s keystream to the file at `path` in place.
fn decrypt_in_place(path: &Path, key: &FileKey) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut buf = vec![0u8; IN_PLACE_CHUNK];
    let mut offset = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let piece = &mut buf[..n];
        key.apply(offset, piece).map_err(std::io::Error::other)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(piece)?;
        offset += n as u64;
    }
}

/// Streams the raw bytes of a complete blob (what peers and relays hold).
#[cfg(test)]
async fn raw(blobs: &Blobs, hash: Hash) -> Vec<u8> {
    let mut all = Vec::new();
    let mut reader = blobs.store().blobs().reader(hash);
    reader.read_to_end(&mut all).await.unwrap();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::BlobConfig;

    async fn open(dir: &Path) -> Blobs {
        let identity = meshchat_crdt::Identity::generate();
        let config = BlobConfig::loopback();
        let (blobs, router) = Blobs::open(&dir.join("blobs"), &identity, config, &[])
            .await
            .unwrap();
        blobs.serve(router);
        blobs
    }

    #[tokio::test]
    async fn a_sealed_import_stores_ciphertext_and_exports_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = open(dir.path()).await;
        // Chunks and a bit: offsets cross the import's and the export's
        // chunk boundaries.
        let plain: Vec<u8> = (0..IN_PLACE_CHUNK + 3 * CHUNK + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, &plain).unwrap();

        let (hash, size, key) = import_sealed(&blobs, &src).await.unwrap();
        assert_eq!(size, plain.len() as u64);
        let stored = raw(&blobs, hash).await;
        assert_eq!(stored.len(), plain.len());
        assert_ne!(stored, plain);
        assert_eq!(hash, Hash::new(&stored), "the hash names the ciphertext");
        let mut expected = plain.clone();
        key.apply(0, &mut expected).unwrap();
        assert_eq!(stored, expected);

        let out = dir.path().join("out.bin");
        assert_eq!(export_opened(&blobs, hash, &key, &out).await.unwrap(), size);
        assert_eq!(std::fs::read(&out).unwrap(), plain);
        assert_eq!(
            raw(&blobs, hash).await,
            stored,
            "the store keeps the ciphertext"
        );

        // The same file sent again is a new blob under a new key.
        let (again, _, other) = import_sealed(&blobs, &src).await.unwrap();
        assert_ne!(again, hash);
        assert_ne!(other, key);
        blobs.shutdown().await;
    }

    #[tokio::test]
    async fn an_empty_file_imports_and_exports() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = open(dir.path()).await;
        let src = dir.path().join("empty");
        std::fs::write(&src, b"").unwrap();
        let (hash, size, key) = import_sealed(&blobs, &src).await.unwrap();
        assert_eq!(size, 0);
        let out = dir.path().join("out");
        assert_eq!(export_opened(&blobs, hash, &key, &out).await.unwrap(), 0);
        assert_eq!(std::fs::read(&out).unwrap(), b"");
        blobs.shutdown().await;
    }
}
