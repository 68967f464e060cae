//! Writing a received file to the user's disk. The name comes from the
//! network (whoever sent the file chose it), so it is made safe before it
//! touches a folder: no path separators, no leading dot (no `.bashrc`, no
//! `..`) unless asked, no control or bidirectional-override characters, a
//! bounded length, and no names Windows reserves. An existing file is never
//! replaced unless asked, and the bytes are written under a fresh random
//! name and then linked (or, when asked to replace, renamed) into place, so
//! a link planted at the target is never followed.

use std::path::{Path, PathBuf};

use super::{service::Blobs, BlobError};
use iroh_blobs::Hash;
use meshchat_crdt::FileKey;
use serde::{Deserialize, Serialize};

/// Longest file name written, in bytes (file systems allow 255).
pub const MAX_SAVED_NAME_BYTES: usize = 200;
/// Longest extension kept whole when a name is shortened.
const MAX_KEPT_EXTENSION_BYTES: usize = 16;
/// Used when nothing of the sender's name is left.
const FALLBACK_NAME: &str = "file";
/// Names Windows reserves for devices, whatever their extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// How a fetched file is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveOptions {
    /// Replace a file that exists already (`--force`).
    #[serde(default)]
    pub overwrite: bool,
    /// Keep a leading dot in the sender's file name, making a hidden file.
    #[serde(default)]
    pub allow_hidden: bool,
}

/// Characters that change how text displays without showing themselves:
/// they can make `gpj.exe` read as `exe.jpg`.
fn is_invisible_control(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A file name from the network, made safe to create inside a folder.
pub fn safe_file_name(name: &str, allow_hidden: bool) -> String {
    let mut safe: String = name
        .chars()
        .filter(|c| !is_invisible_control(*c))
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c => c,
        })
        .collect();
    safe = safe.trim().trim_end_matches('.').trim_end().to_owned();
    if !allow_hidden || safe.chars().all(|c| c == '.') {
        safe = safe.trim_start_matches('.').trim_start().to_owned();
    }
    if safe.is_empty() {
        return FALLBACK_NAME.to_owned();
    }
    let stem = safe.split('.').next().unwrap_or_default();
    if RESERVED.iter().any(|r| stem.eq_ignore_ascii_case(r)) {
        safe.insert(0, '_');
    }
    shorten(safe)
}

/// Cuts `name` to [`MAX_SAVED_NAME_BYTES`] on a character boundary, keeping
/// a short extension.
fn shorten(name: String) -> String {
    if name.len() <= MAX_SAVED_NAME_BYTES {
        return name;
    }
    let extension = name
        .rfind('.')
        .filter(|dot| *dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION_BYTES)
        .map(|dot| name[dot..].to_owned())
        .unwrap_or_default();
    let mut stem_end = MAX_SAVED_NAME_BYTES - extension.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{extension}", &name[..stem_end])
}

/// Where fetched files go by default: the user's Downloads folder, or
/// `<data dir>/downloads` where there is none.
pub fn default_download_dir(data_dir: &Path) -> PathBuf {
    directories::UserDirs::new()
        .and_then(|dirs| dirs.download_dir().map(Path::to_path_buf))
        .unwrap_or_else(|| data_dir.join("downloads"))
}

/// The path a file named `name` (by its sender) is written to for `out`:
/// inside `out` under the safe name when `out` is a folder, else `out`
/// itself (a name the user chose). Also the sender's name when it had to
/// change.
pub(crate) fn target(out: &Path, name: &str, options: SaveOptions) -> (PathBuf, Option<String>) {
    if !out.is_dir() {
        return (out.to_path_buf(), None);
    }
    let safe = safe_file_name(name, options.allow_hidden);
    let renamed = (safe != name).then(|| name.to_owned());
    (out.join(safe), renamed)
}

/// Copies the complete blob `hash` to `target`, decrypted with `key` when
/// it is a file's encrypted blob, creating its folder. Fails if `target`
/// exists, unless `options.overwrite`.
pub(crate) async fn write(
    blobs: &Blobs,
    hash: Hash,
    key: Option<&FileKey>,
    target: &Path,
    options: SaveOptions,
) -> Result<u64, BlobError> {
    if blobs.complete_size(hash).await?.is_none() {
        return Err(BlobError::NotDownloaded(hash.to_string()));
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| BlobError::File(format!("{path}: {e}"))
    };
    let target = std::path::absolute(target).map_err(io(target))?;
    let folder = target
        .parent()
        .ok_or_else(|| BlobError::File(format!("{} is not a file path", target.display())))?;
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(io(folder))?;
    // Written under a fresh, unguessable name first: a crash leaves no half
    // file under the real name, and an existing file is only replaced when
    // complete.
    let partial = folder.join(format!(
        ".meshchat-partial-{}-{:016x}",
        &hash.to_string()[..16],
        rand::random::<u64>()
    ));
    let written = match key {
        Some(key) => super::cipher::export_opened(blobs, hash, key, &partial).await,
        None => copy_into(blobs, hash, &partial).await,
    };
    let size = match written {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(io(&partial)(e));
        }
    };
    let placed = if options.overwrite {
        // Renaming over a link replaces the link, never what it points at.
        tokio::fs::rename(&partial, &target).await
    } else {
        place_new(&partial, &target).await
    };
    let _ = tokio::fs::remove_file(&partial).await;
    match placed {
        Ok(()) => Ok(size),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(BlobError::Exists(target)),
        Err(e) => Err(io(&target)(e)),
    }
}

/// Gives `partial` the name `target` unless that name exists.
async fn place_new(partial: &Path, target: &Path) -> std::io::Result<()> {
    // A hard link fails if the name exists (a link or not): no race.
    match tokio::fs::hard_link(partial, target).await {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            // A file system without hard links: check, then rename.
            if tokio::fs::symlink_metadata(target).await.is_ok() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            tokio::fs::rename(partial, target).await
        }
        other => other,
    }
}

/// Exports the blob as it is (a ticket's file, a file from before
/// encryption) to `path` (a fresh, unguessable name). Not fsynced,
/// like iroh-blobs' export and browsers' downloads: the verified bytes stay
/// in the blob store, and `meshchat fetch` writes them out again.
async fn copy_into(blobs: &Blobs, hash: Hash, path: &Path) -> std::io::Result<u64> {
    blobs
        .store()
        .blobs()
        .export(hash, path)
        .finish()
        .await
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_network_cannot_escape_hide_or_disguise() {
        let cases = [
            (".bashrc", "bashrc"),
            ("..", "file"),
            ("../x", "_x"),
            ("..\\..\\x", "_.._x"),
            ("a\nb\u{7}.png", "ab.png"),
            ("cat\u{202E}gpj.exe", "catgpj.exe"),
            ("  photo.jpg. ", "photo.jpg"),
            ("CON.txt", "_CON.txt"),
            ("lpt1", "_lpt1"),
            ("C:evil", "C_evil"),
            ("", "file"),
            ("\u{200B}", "file"),
            ("report.pdf", "report.pdf"),
        ];
        for (name, safe) in cases {
            assert_eq!(safe_file_name(name, false), safe, "{name:?}");
        }
        assert_eq!(safe_file_name(".bashrc", true), ".bashrc");
        assert_eq!(safe_file_name("..", true), "file");
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let safe = safe_file_name(&long, false);
        assert!(safe.len() <= MAX_SAVED_NAME_BYTES, "{}", safe.len());
        assert!(safe.ends_with("é.pdf"), "{safe}");
        let no_ext = "x".repeat(500);
        assert_eq!(safe_file_name(&no_ext, false).len(), MAX_SAVED_NAME_BYTES);
    }

    #[test]
    fn a_folder_gets_the_safe_name_a_file_path_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (path, renamed) = target(dir.path(), ".bashrc", SaveOptions::default());
        assert_eq!(path, dir.path().join("bashrc"));
        assert_eq!(renamed.as_deref(), Some(".bashrc"));
        let (path, renamed) = target(dir.path(), "ok.txt", SaveOptions::default());
        assert_eq!((path, renamed), (dir.path().join("ok.txt"), None));
        let chosen = dir.path().join(".profile");
        assert_eq!(target(&chosen, "x", SaveOptions::default()).0, chosen);
    }
}
