//! Sharing outside chats: a standard iroh-blobs ticket for a collection that
//! holds one file under its name, and downloading any standard ticket.

use std::path::{Path, PathBuf};

use iroh_blobs::{format::collection::Collection, ticket::BlobTicket, BlobFormat, HashAndFormat};

use super::{
    endpoint,
    save::{self, safe_file_name, SaveOptions},
    service::{Blobs, Step, SHARE_TAG},
    BlobError,
};

/// Imports `path` into a one-file collection anyone with the ticket may fetch.
pub(crate) async fn share(blobs: &Blobs, path: &Path) -> Result<BlobTicket, BlobError> {
    let (hash, _) = blobs.import(path).await?;
    let mut collection = Collection::default();
    collection.push(super::file_kind::file_name(path), hash);
    let root = collection
        .store(blobs.store())
        .await
        .map_err(|e| BlobError::Store(e.to_string()))?;
    let root_hash = root.hash();
    blobs
        .store()
        .tags()
        .set(
            format!("{SHARE_TAG}{root_hash}"),
            HashAndFormat::hash_seq(root_hash),
        )
        .await
        .map_err(|e| BlobError::Store(e.to_string()))?;
    blobs.access().make_public_collection(root_hash);
    blobs.access().make_public(hash);
    Ok(BlobTicket::new(
        endpoint::own_addr(blobs.endpoint()),
        root_hash,
        BlobFormat::HashSeq,
    ))
}

/// Downloads what `ticket` names and writes it under `out`: each file of a
/// collection under its name (made safe), a raw blob as `<hash>`. Returns
/// the files written.
pub(crate) async fn fetch_ticket(
    blobs: &Blobs,
    ticket: &BlobTicket,
    out: &Path,
    options: SaveOptions,
    progress: impl FnMut(Step),
) -> Result<Vec<(PathBuf, u64)>, BlobError> {
    blobs.remember_addr(ticket.addr().clone());
    let content = ticket.hash_and_format();
    let max = blobs.config().max_file_bytes;
    blobs
        .download(content, vec![ticket.addr().id], max, progress)
        .await?;
    let mut written = Vec::new();
    match ticket.format() {
        BlobFormat::Raw => {
            let target = out.join(ticket.hash().to_string());
            let size = save::write(blobs, ticket.hash(), None, &target, options).await?;
            written.push((target, size));
        }
        BlobFormat::HashSeq => {
            let collection = Collection::load(ticket.hash(), blobs.store())
                .await
                .map_err(|e| BlobError::Store(format!("not a collection: {e}")))?;
            for (name, hash) in collection.iter() {
                let target = out.join(safe_relative(name, options.allow_hidden)?);
                let size = save::write(blobs, *hash, None, &target, options).await?;
                written.push((target, size));
            }
        }
    }
    Ok(written)
}

/// A collection entry's name as a path that stays inside the output folder,
/// each part made safe.
fn safe_relative(name: &str, allow_hidden: bool) -> Result<PathBuf, BlobError> {
    let mut path = PathBuf::new();
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains(['\\', '\0']) {
            return Err(BlobError::File(format!(
                "refusing collection entry {name:?}: not a plain relative path"
            )));
        }
        path.push(safe_file_name(part, allow_hidden));
    }
    if path.as_os_str().is_empty() {
        return Err(BlobError::File("empty collection entry name".into()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_cannot_escape_the_output_folder() {
        assert_eq!(
            safe_relative("dir/a.txt", false).unwrap(),
            PathBuf::from("dir/a.txt")
        );
        assert_eq!(
            safe_relative(".ssh/authorized_keys", false).unwrap(),
            PathBuf::from("ssh/authorized_keys")
        );
        for bad in ["../x", "/etc/passwd", "a//b", "", "a/./b", "c:\\x"] {
            assert!(safe_relative(bad, false).is_err(), "{bad}");
        }
    }
}
