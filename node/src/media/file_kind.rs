//! What a file is (MIME type sniffed from its first bytes, never trusted from
//! its name) and, for images, a small inline preview.

use std::{io::Read, path::Path};

use meshchat_crdt::MAX_PREVIEW_BYTES;

/// Bytes read to recognise a file type.
const SNIFF_BYTES: usize = 8 * 1024;
/// Images larger than this get no preview (decoding would cost too much).
const MAX_PREVIEW_SOURCE_BYTES: u64 = 64 * 1024 * 1024;
/// Longest side of a preview, in pixels, tried from largest to smallest until
/// the JPEG fits in [`MAX_PREVIEW_BYTES`].
const PREVIEW_SIDES: [u32; 3] = [96, 64, 32];
const PREVIEW_QUALITY: u8 = 60;

/// The MIME type of the file at `path`, from its content.
pub(crate) fn sniff_mime(path: &Path) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    std::fs::File::open(path)?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(mime_of(&head))
}

/// The MIME type of content starting with `head`.
pub(crate) fn mime_of(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sample is still text.
        Err(e) => e.error_len().is_none(),
    };
    if text && !head.contains(&0) {
        "text/plain".into()
    } else {
        "application/octet-stream".into()
    }
}

/// A JPEG preview of the image at `path`, or `None` if it is not an image
/// this node can decode (or is too large to decode cheaply).
pub(crate) fn preview(path: &Path, mime: &str, size: u64) -> Option<Vec<u8>> {
    if !mime.starts_with("image/") || size > MAX_PREVIEW_SOURCE_BYTES {
        return None;
    }
    let image = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .decode()
        .ok()?;
    for side in PREVIEW_SIDES {
        let small = image.thumbnail(side, side).to_rgb8();
        let mut out = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, PREVIEW_QUALITY);
        if small.write_with_encoder(encoder).is_ok() && out.len() <= MAX_PREVIEW_BYTES {
            return Some(out);
        }
    }
    None
}

/// The last component of `path`, as a file name fit for an attachment.
pub(crate) fn file_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = name.chars().filter(|c| !c.is_control()).collect();
    while name.len() > meshchat_crdt::MAX_FILE_NAME_BYTES {
        name.pop();
    }
    if name.is_empty() {
        "file".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_comes_from_content_not_name() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(mime_of(png), "image/png");
        assert_eq!(mime_of(b"hello world"), "text/plain");
        assert_eq!(mime_of(&[0, 159, 146, 150]), "application/octet-stream");
    }

    #[test]
    fn images_get_a_small_jpeg_preview() {
        let dir = tempfile::tempdir().unwrap();
        // Named .txt on purpose: the name is not trusted.
        let path = dir.path().join("photo.txt");
        let img = image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        img.save_with_format(&path, image::ImageFormat::Png)
            .unwrap();
        let mime = sniff_mime(&path).unwrap();
        assert_eq!(mime, "image/png");
        let size = std::fs::metadata(&path).unwrap().len();
        let preview = preview(&path, &mime, size).unwrap();
        assert!(preview.len() <= MAX_PREVIEW_BYTES);
        assert_eq!(mime_of(&preview), "image/jpeg");
        assert!(super::preview(&path, "text/plain", size).is_none());
    }

    #[test]
    fn file_names_lose_directories_and_control_characters() {
        assert_eq!(file_name(Path::new("/tmp/a\nb.png")), "ab.png");
        assert_eq!(file_name(Path::new("/")), "file");
    }
}
