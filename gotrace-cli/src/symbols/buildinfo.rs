//! Go's build information blob (`.go.buildinfo`): the Go version and the
//! main module path, as `go version -m` prints them
//! (`src/debug/buildinfo/buildinfo.go`).
//!
//! The blob starts with a 14-byte magic, a pointer size and a flags byte.
//! Since Go 1.18 (flag bit 1) the version and module info follow inline at
//! offset 32 as varint-prefixed strings; before, two pointers at offset 16
//! lead to Go string headers elsewhere in the binary, which the caller
//! resolves through `read`.

use super::image::Image;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const FLAG_BIG_ENDIAN: u8 = 0x1;
const FLAG_INLINE: u8 = 0x2;
/// The module info is framed by 16 bytes of sentinel on both sides.
const SENTINEL: usize = 16;

/// What `.go.buildinfo` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// e.g. `go1.27.3`.
    pub go_version: String,
    /// The main module's path (`path` line), if recorded.
    pub main_path: Option<String>,
    /// Whether cgo was on (`build CGO_ENABLED=...`, Go 1.18+), if recorded.
    pub cgo: Option<bool>,
}

/// Why the blob could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildInfoError {
    #[error("no Go build info magic")]
    NoMagic,
    #[error("Go build info is truncated")]
    Truncated,
    #[error("Go build info of a big-endian or {0}-byte-pointer target")]
    Unsupported(u8),
}

/// Parses the blob at the start of `data`; the pre-1.18 layout's pointers
/// lead into `image`, the whole binary.
pub fn parse(data: &[u8], image: &Image<'_>) -> Result<BuildInfo, BuildInfoError> {
    if data.get(..MAGIC.len()) != Some(MAGIC) {
        return Err(BuildInfoError::NoMagic);
    }
    let ptr_size = *data.get(14).ok_or(BuildInfoError::Truncated)?;
    let flags = *data.get(15).ok_or(BuildInfoError::Truncated)?;
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let rest = data.get(32..).ok_or(BuildInfoError::Truncated)?;
        let (version, rest) = varint_string(rest).ok_or(BuildInfoError::Truncated)?;
        let (modinfo, _) = varint_string(rest).unwrap_or((&[], &[]));
        (version, modinfo)
    } else {
        if flags & FLAG_BIG_ENDIAN != 0 || ptr_size != 8 {
            return Err(BuildInfoError::Unsupported(ptr_size));
        }
        let string_at = |pointer_offset: usize| -> Option<&[u8]> {
            let header_address = word(data, pointer_offset)?;
            let (address, len) = (
                image.u64_at(header_address)?,
                image.u64_at(header_address.checked_add(8)?)?,
            );
            image.bytes_at(address, usize::try_from(len).ok()?)
        };
        let version = string_at(16).ok_or(BuildInfoError::Truncated)?;
        (version, string_at(24).unwrap_or(&[]))
    };
    let modinfo = module_info(modinfo);
    let setting = |key: &str| {
        modinfo.lines().find_map(|l| {
            l.strip_prefix("build\t")?
                .strip_prefix(key)?
                .strip_prefix('=')
        })
    };
    Ok(BuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        main_path: modinfo
            .lines()
            .find_map(|l| l.strip_prefix("path\t").map(str::to_owned)),
        cgo: setting("CGO_ENABLED").map(|v| v == "1"),
    })
}

/// The text of module info (`path\tcounter\nmod\t...\nbuild\t...`),
/// without the sentinels that frame it.
fn module_info(modinfo: &[u8]) -> String {
    let text = if modinfo.len() >= 2 * SENTINEL {
        &modinfo[SENTINEL..modinfo.len() - SENTINEL]
    } else {
        modinfo
    };
    String::from_utf8_lossy(text).into_owned()
}

fn word(data: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        data.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

/// A uvarint length followed by that many bytes.
fn varint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let start = i + 1;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            return Some((data.get(start..end)?, &data[end..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::image::Segment;

    /// An image with nothing in it.
    const EMPTY: Image<'static> = Image::new(&[], &[]);

    fn inline_blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, FLAG_INLINE]);
        blob.resize(32, 0);
        for s in [version, modinfo] {
            blob.push(s.len() as u8);
            blob.extend_from_slice(s.as_bytes());
        }
        blob
    }

    fn framed(modinfo: &str) -> String {
        format!("{0}{modinfo}{0}", "x".repeat(SENTINEL))
    }

    #[test]
    fn inline_layout() {
        let blob = inline_blob(
            "go1.27.3",
            &framed("path\tcounter\nmod\tcounter\t(devel)\t\n"),
        );
        let info = parse(&blob, &EMPTY).unwrap();
        assert_eq!(info.go_version, "go1.27.3");
        assert_eq!(info.main_path.as_deref(), Some("counter"));
        assert_eq!(info.cgo, None);
    }

    #[test]
    fn cgo_setting() {
        for (value, cgo) in [("1", Some(true)), ("0", Some(false))] {
            let modinfo = format!(
                "path\tapp\nbuild\t-compiler=gc\nbuild\tCGO_ENABLED={value}\nbuild\tGOOS=linux\n"
            );
            let info = parse(&inline_blob("go1.19.8", &framed(&modinfo)), &EMPTY).unwrap();
            assert_eq!(info.cgo, cgo, "{modinfo}");
        }
    }

    #[test]
    fn pointer_layout() {
        // Blob at 0x1000 pointing at string headers at 0x2000 / 0x2010,
        // whose bytes live at 0x3000 / 0x4000.
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, 0]);
        blob.extend_from_slice(&0x2000u64.to_le_bytes());
        blob.extend_from_slice(&0x2010u64.to_le_bytes());
        let modinfo = framed("path\texample.com/app\n");
        let mut headers = Vec::new();
        for (address, len) in [(0x3000u64, 8u64), (0x4000, modinfo.len() as u64)] {
            headers.extend_from_slice(&address.to_le_bytes());
            headers.extend_from_slice(&len.to_le_bytes());
        }
        // The file: headers, then the two strings, each a segment.
        let mut file = headers.clone();
        file.extend_from_slice(b"go1.16.5");
        file.extend_from_slice(modinfo.as_bytes());
        let segment = |address: u64, file_offset: usize, file_size: usize| Segment {
            address,
            file_offset: file_offset as u64,
            file_size: file_size as u64,
        };
        let segments = [
            segment(0x2000, 0, headers.len()),
            segment(0x3000, headers.len(), 8),
            segment(0x4000, headers.len() + 8, modinfo.len()),
        ];
        let info = parse(&blob, &Image::new(&file, &segments)).unwrap();
        assert_eq!(info.go_version, "go1.16.5");
        assert_eq!(info.main_path.as_deref(), Some("example.com/app"));
    }

    #[test]
    fn truncated_or_corrupt_never_panics() {
        let blob = inline_blob("go1.19.8", &framed("path\tx\n"));
        for len in 0..blob.len() {
            let _ = parse(&blob[..len], &EMPTY);
        }
        for at in 0..blob.len() {
            for byte in [0x00, 0x02, 0x7f, 0x80, 0xff] {
                let mut bad = blob.clone();
                bad[at] = byte;
                let _ = parse(&bad, &EMPTY);
            }
        }
        assert_eq!(parse(b"nothing", &EMPTY), Err(BuildInfoError::NoMagic));
    }

    proptest::proptest! {
        /// Arbitrary bytes behind the magic, in either layout, never panic.
        #[test]
        fn arbitrary_blobs_never_panic(
            flags in 0u8..4,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let mut blob = MAGIC.to_vec();
            blob.extend_from_slice(&[8, flags]);
            blob.extend_from_slice(&body);
            // The body mapped at 0 and at every address its pointers may
            // name, as far as its length goes.
            let segments = [Segment { address: 0, file_offset: 0, file_size: u64::MAX }];
            let _ = parse(&blob, &Image::new(&body, &segments));
        }
    }
}
