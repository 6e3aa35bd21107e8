//! A binary's bytes as the loader lays them out: reads by virtual address
//! through the loadable segments. Every parser that follows pointers
//! inside a binary (build info before Go 1.18, inline trees in
//! `go:func.*`, type descriptors) reads through one, so that their tests
//! and fuzz targets hand them a synthetic image instead of a file.

/// A loadable segment: how a range of virtual addresses sits in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub address: u64,
    pub file_offset: u64,
    pub file_size: u64,
}

/// File data and its segments.
#[derive(Clone, Copy, Debug)]
pub struct Image<'d> {
    data: &'d [u8],
    segments: &'d [Segment],
}

impl<'d> Image<'d> {
    pub const fn new(data: &'d [u8], segments: &'d [Segment]) -> Self {
        Self { data, segments }
    }

    /// The file offset of a virtual address, which is what a uprobe is
    /// attached by. `None` when no loadable segment holds the address.
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.segments.iter().find_map(|s| {
            let delta = address.checked_sub(s.address)?;
            (delta < s.file_size).then(|| s.file_offset.checked_add(delta))?
        })
    }

    /// The virtual address a file offset is loaded at.
    pub fn address_of_file_offset(&self, offset: u64) -> Option<u64> {
        self.segments.iter().find_map(|s| {
            let delta = offset.checked_sub(s.file_offset)?;
            (delta < s.file_size.max(1)).then(|| s.address.checked_add(delta))?
        })
    }

    /// Up to `len` bytes from `address` (fewer at the end of the file,
    /// none outside it).
    pub fn code_at(&self, address: u64, len: u64) -> &'d [u8] {
        let Some(start) = self
            .file_offset(address)
            .and_then(|o| usize::try_from(o).ok())
        else {
            return &[];
        };
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(self.data.len());
        self.data.get(start..end).unwrap_or(&[])
    }

    /// Exactly `len` bytes at `address`.
    pub fn bytes_at(&self, address: u64, len: usize) -> Option<&'d [u8]> {
        let bytes = self.code_at(address, len as u64);
        (bytes.len() == len).then_some(bytes)
    }

    /// The little-endian word at `address`.
    pub fn u64_at(&self, address: u64) -> Option<u64> {
        Some(u64::from_le_bytes(
            self.bytes_at(address, 8)?.try_into().ok()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_segments() {
        let data: Vec<u8> = (0..=255).collect();
        let segments = [
            Segment {
                address: 0x1000,
                file_offset: 0,
                file_size: 0x80,
            },
            Segment {
                address: 0x4000,
                file_offset: 0x80,
                file_size: 0x80,
            },
        ];
        let image = Image::new(&data, &segments);
        assert_eq!(image.file_offset(0x4010), Some(0x90));
        assert_eq!(image.file_offset(0x1080), None);
        assert_eq!(image.address_of_file_offset(0x90), Some(0x4010));
        assert_eq!(image.bytes_at(0x1002, 2), Some(&[2u8, 3][..]));
        assert_eq!(image.bytes_at(0x407f, 2), None);
        assert_eq!(image.code_at(0x407e, 16), &[0xfe, 0xff]);
        assert_eq!(
            image.u64_at(0x4000),
            Some(u64::from_le_bytes([
                0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87
            ]))
        );
        assert_eq!(image.u64_at(u64::MAX - 3), None);
        assert_eq!(image.code_at(0, 4), &[] as &[u8]);
    }
}
