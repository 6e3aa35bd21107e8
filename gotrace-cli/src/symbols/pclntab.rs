//! Go's pc-line table (`.gopclntab`): the function names and entries the Go
//! runtime itself uses for tracebacks, present even in stripped binaries.
//!
//! Four layouts exist, told apart by the magic at the start:
//!
//! | magic        | written by  | function entries in the table       |
//! |--------------|-------------|-------------------------------------|
//! | `0xfffffffb` | Go 1.2-1.15 | absolute, pointer-sized             |
//! | `0xfffffffa` | Go 1.16-1.17| absolute, pointer-sized             |
//! | `0xfffffff0` | Go 1.18-1.19| 32-bit offsets from the text start  |
//! | `0xfffffff1` | Go 1.20+    | 32-bit offsets from the text start  |
//!
//! (`src/debug/gosym/pclntab.go` and `src/runtime/symtab.go` of any Go
//! toolchain.) Since Go 1.26 the header's text start is zero, so for the
//! offset layouts the caller passes the text start it found elsewhere (see
//! [`super::moduledata`]). Every read is bounds-checked: a truncated or
//! corrupt table gives an error or fewer functions, never a panic.

/// The table layout, named after the first Go release that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Go12,
    Go116,
    Go118,
    Go120,
}

impl Version {
    fn from_magic(magic: u32) -> Option<Version> {
        match magic {
            0xffff_fffb => Some(Version::Go12),
            0xffff_fffa => Some(Version::Go116),
            0xffff_fff0 => Some(Version::Go118),
            0xffff_fff1 => Some(Version::Go120),
            _ => None,
        }
    }

    /// Entries are offsets from the text start (not absolute addresses).
    pub fn relative_entries(self) -> bool {
        self >= Version::Go118
    }
}

/// Why a byte range is not a pc-line table gotrace can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error("too short for a pclntab header")]
    Truncated,
    #[error("unknown pclntab magic {0:#010x}")]
    BadMagic(u32),
    #[error(
        "pclntab header is malformed (pad {pad:#x}, quantum {quantum}, pointer size {ptr_size})"
    )]
    BadHeader { pad: u16, quantum: u8, ptr_size: u8 },
    #[error("pclntab {what} lies outside the table")]
    OutOfBounds { what: &'static str },
}

/// One function of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcFunc<'a> {
    pub name: &'a str,
    /// Virtual address of the entry.
    pub entry: u64,
    /// Virtual address just past the function's code.
    pub end: u64,
    /// Offset of the function's `_func` record (for pcdata and funcdata).
    pub func_offset: usize,
}

/// A parsed pc-line table, borrowing the mapped binary.
#[derive(Debug)]
pub struct Pclntab<'a> {
    pub version: Version,
    ptr_size: usize,
    /// Instruction size unit of pc deltas (1 on amd64).
    quantum: u8,
    nfunc: usize,
    /// Text start the offset layouts are relative to (0 for absolute ones).
    text_start: u64,
    funcnametab: &'a [u8],
    /// pc-value tables (pcsp, pcfile, pcln, pcdata), for Go 1.16+.
    pctab: &'a [u8],
    functab: &'a [u8],
    /// Base the `_func` offsets of `functab` are relative to.
    funcdata: &'a [u8],
}

impl<'a> Pclntab<'a> {
    /// The magic at the start of `data`, if it is one of a pclntab.
    pub fn version_of(data: &[u8]) -> Option<Version> {
        Version::from_magic(u32::from_le_bytes(data.get(..4)?.try_into().ok()?))
    }

    /// Parses the table at the start of `data`. `text_start` is used by
    /// the offset layouts when the header's own copy is zero (Go 1.26+) or
    /// unrelocated (PIE).
    pub fn parse(data: &'a [u8], text_start: Option<u64>) -> Result<Self, PclntabError> {
        let header = data.get(..8).ok_or(PclntabError::Truncated)?;
        let magic = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let version = Version::from_magic(magic).ok_or(PclntabError::BadMagic(magic))?;
        let pad = u16::from_le_bytes([header[4], header[5]]);
        let (quantum, ptr_size) = (header[6], header[7]);
        if pad != 0 || !matches!(quantum, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
            return Err(PclntabError::BadHeader {
                pad,
                quantum,
                ptr_size,
            });
        }
        let ptr_size = usize::from(ptr_size);
        let word = |n: usize| -> Result<u64, PclntabError> {
            read_uint(data, 8 + n * ptr_size, ptr_size).ok_or(PclntabError::Truncated)
        };
        let tail = |offset: u64, what: &'static str| -> Result<&'a [u8], PclntabError> {
            usize::try_from(offset)
                .ok()
                .and_then(|o| data.get(o..))
                .ok_or(PclntabError::OutOfBounds { what })
        };
        let nfunc = usize::try_from(word(0)?).map_err(|_| PclntabError::Truncated)?;
        let field = if version.relative_entries() {
            4
        } else {
            ptr_size
        };
        // nfunc (entry, offset) pairs and one final end address.
        let functab_len = nfunc
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(field))
            .ok_or(PclntabError::OutOfBounds {
                what: "function table",
            })?;
        let (text, funcnametab, pctab, funcdata) = match version {
            Version::Go118 | Version::Go120 => {
                let header_text = word(2)?;
                let text = text_start.unwrap_or(header_text);
                (
                    text,
                    tail(word(3)?, "name table")?,
                    tail(word(6)?, "pc tables")?,
                    tail(word(7)?, "function data")?,
                )
            }
            Version::Go116 => (
                0,
                tail(word(2)?, "name table")?,
                tail(word(5)?, "pc tables")?,
                tail(word(6)?, "function data")?,
            ),
            Version::Go12 => (0, data, data, data),
        };
        let functab_start: &[u8] = match version {
            Version::Go12 => tail(8 + ptr_size as u64, "function table")?,
            _ => funcdata,
        };
        let functab = functab_start
            .get(..functab_len)
            .ok_or(PclntabError::OutOfBounds {
                what: "function table",
            })?;
        Ok(Pclntab {
            version,
            ptr_size,
            quantum,
            nfunc,
            text_start: text,
            funcnametab,
            pctab,
            functab,
            funcdata,
        })
    }

    /// The header's own text start word (Go 1.18-1.25; 0 from Go 1.26 on).
    pub fn header_text_start(data: &[u8]) -> Option<u64> {
        let version = Self::version_of(data)?;
        let ptr_size = usize::from(*data.get(7)?);
        version
            .relative_entries()
            .then(|| read_uint(data, 8 + 2 * ptr_size, ptr_size))
            .flatten()
    }

    /// The functions, in table (address) order. Records that point outside
    /// the table are skipped rather than trusted.
    pub fn functions(&self) -> impl Iterator<Item = PcFunc<'a>> + '_ {
        (0..self.nfunc).filter_map(move |i| self.function(i))
    }

    /// The function whose code holds `pc`, by binary search over the
    /// table (which the linker sorts by entry).
    pub fn function_containing(&self, pc: u64) -> Option<PcFunc<'a>> {
        let (mut low, mut high) = (0, self.nfunc);
        while low < high {
            let mid = low + (high - low) / 2;
            let f = self.function(mid)?;
            if pc < f.entry {
                high = mid;
            } else if pc >= f.end {
                low = mid + 1;
            } else {
                return Some(f);
            }
        }
        None
    }

    fn function(&self, i: usize) -> Option<PcFunc<'a>> {
        let field = if self.version.relative_entries() {
            4
        } else {
            self.ptr_size
        };
        let at = |n: usize| read_uint(self.functab, n * field, field);
        let entry = self.text_start.checked_add(at(2 * i)?)?;
        let func_offset = usize::try_from(at(2 * i + 1)?).ok()?;
        let end = self.text_start.checked_add(at(2 * i + 2)?)?;
        // `_func` starts with the entry (u32 offset or pointer), then nameOff.
        let entry_size = if self.version.relative_entries() {
            4
        } else {
            self.ptr_size
        };
        let record = self.funcdata.get(func_offset..)?;
        let name = self.name(read_uint(record, entry_size, 4)? as u32 as i32)?;
        (end > entry).then_some(PcFunc {
            name,
            entry,
            end,
            func_offset,
        })
    }
}

impl<'a> Pclntab<'a> {
    /// The function name at `offset` of the name table.
    pub fn name(&self, offset: i32) -> Option<&'a str> {
        c_string(self.funcnametab, usize::try_from(offset).ok()?)
    }

    /// The `_func` record of `function`, for the Go 1.18+ layouts (older
    /// ones keep funcdata as absolute pointers, which gotrace does not read).
    pub fn record(&self, function: &PcFunc<'a>) -> Option<FuncRecord<'a>> {
        // entryOff nameOff args deferreturn pcsp pcfile pcln npcdata
        // cuOffset [startLine, Go 1.20+] funcID flag pad nfuncdata
        let fixed = match self.version {
            Version::Go118 => 40,
            Version::Go120 => 44,
            Version::Go12 | Version::Go116 => return None,
        };
        let record = self.funcdata.get(function.func_offset..)?;
        let npcdata = usize::try_from(read_uint(record, 28, 4)?).ok()?;
        let nfuncdata = usize::from(*record.get(fixed - 1)?);
        let tables = record.get(fixed..)?;
        Some(FuncRecord {
            pcsp: read_uint(record, 16, 4)? as u32,
            npcdata,
            nfuncdata,
            tables,
        })
    }

    /// How far below its value at the function's entry the stack pointer
    /// is at `pc` (the frame the function has set up there).
    pub fn sp_delta(&self, pc: u64) -> Option<u64> {
        let function = self.function_containing(pc)?;
        let table = self.record(&function)?.pcsp()?;
        self.pc_values(table, function.entry)
            .into_iter()
            .find(|&(start, end, _)| (start..end).contains(&pc))
            .and_then(|(_, _, delta)| u64::try_from(delta).ok())
    }

    /// The (start, end, value) ranges of the pc-value table at `offset` of
    /// the pc tables, for a function entered at `entry`. Values start at
    /// -1; each step adds a zig-zag delta and advances the pc.
    pub fn pc_values(&self, offset: u32, entry: u64) -> Vec<(u64, u64, i32)> {
        let mut ranges = Vec::new();
        let Some(mut p) = usize::try_from(offset)
            .ok()
            .and_then(|o| self.pctab.get(o..))
        else {
            return ranges;
        };
        let (mut pc, mut value) = (entry, -1i32);
        let mut first = true;
        // A corrupt table could run long: no Go function has this many.
        for _ in 0..1 << 20 {
            let Some((delta, rest)) = uvarint(p) else {
                break;
            };
            if delta == 0 && !first {
                break;
            }
            first = false;
            let delta = delta as u32;
            value = value.wrapping_add((-((delta & 1) as i32)) ^ ((delta >> 1) as i32));
            let Some((pc_delta, rest)) = uvarint(rest) else {
                break;
            };
            p = rest;
            let Some(end) = pc.checked_add(pc_delta.saturating_mul(u64::from(self.quantum))) else {
                break;
            };
            ranges.push((pc, end, value));
            pc = end;
        }
        ranges
    }
}

/// A function's `_func` record past its fixed fields: the pcdata table
/// offsets, then the funcdata offsets.
#[derive(Clone, Copy, Debug)]
pub struct FuncRecord<'a> {
    /// Offset in the pc tables of the stack-pointer delta table.
    pcsp: u32,
    npcdata: usize,
    nfuncdata: usize,
    tables: &'a [u8],
}

impl FuncRecord<'_> {
    /// Offset in the pc tables of the table of how far the stack pointer
    /// is below its value at entry.
    pub fn pcsp(&self) -> Option<u32> {
        (self.pcsp != 0).then_some(self.pcsp)
    }

    /// Offset in the pc tables of pcdata table `index`, if the function has one.
    pub fn pcdata(&self, index: usize) -> Option<u32> {
        (index < self.npcdata)
            .then(|| read_uint(self.tables, index * 4, 4))
            .flatten()
            .map(|o| o as u32)
            .filter(|&o| o != 0)
    }

    /// Offset from `go:func.*` of funcdata `index`, if the function has it.
    pub fn funcdata(&self, index: usize) -> Option<u32> {
        (index < self.nfuncdata)
            .then(|| read_uint(self.tables, (self.npcdata + index) * 4, 4))
            .flatten()
            .map(|o| o as u32)
            .filter(|&o| o != u32::MAX)
    }
}

/// An unsigned LEB128 varint and the bytes after it.
fn uvarint(data: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &data[i + 1..]));
        }
    }
    None
}

/// A little-endian unsigned integer of `size` bytes at `offset`.
pub(super) fn read_uint(data: &[u8], offset: usize, size: usize) -> Option<u64> {
    let bytes = data.get(offset..offset.checked_add(size)?)?;
    Some(match size {
        4 => u64::from(u32::from_le_bytes(bytes.try_into().ok()?)),
        8 => u64::from_le_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

/// The NUL-terminated UTF-8 string at `offset`.
fn c_string(data: &[u8], offset: usize) -> Option<&str> {
    let bytes = data.get(offset..)?;
    let len = bytes.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&bytes[..len]).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a pclntab of `version` the way Go's linker lays it out, for
    /// the layouts no toolchain on this machine writes (1.2, 1.16) and as a
    /// base for corruption tests. `funcs` are (name, entry, end) with
    /// functions contiguous, as the linker emits them.
    pub(crate) fn synthetic(version: Version, text: u64, funcs: &[(&str, u64, u64)]) -> Vec<u8> {
        let magic: u32 = match version {
            Version::Go12 => 0xffff_fffb,
            Version::Go116 => 0xffff_fffa,
            Version::Go118 => 0xffff_fff0,
            Version::Go120 => 0xffff_fff1,
        };
        let relative = version.relative_entries();
        let field = if relative { 4 } else { 8 };
        let put = |out: &mut Vec<u8>, v: u64, size: usize| {
            out.extend_from_slice(&v.to_le_bytes()[..size]);
        };
        let value = |pc: u64| if relative { pc - text } else { pc };

        // Name table: NUL-terminated names.
        let mut names = Vec::new();
        let mut name_offsets = Vec::new();
        for (name, _, _) in funcs {
            name_offsets.push(names.len() as u64);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        // Function data: functab first, then one `_func` per function.
        let functab_len = (2 * funcs.len() + 1) * field;
        let record_len = if relative { 44 } else { 8 + 40 };
        let mut funcdata = Vec::new();
        for (i, (_, entry, _)) in funcs.iter().enumerate() {
            put(&mut funcdata, value(*entry), field);
            put(&mut funcdata, (functab_len + i * record_len) as u64, field);
        }
        put(
            &mut funcdata,
            value(funcs.last().map_or(text, |f| f.2)),
            field,
        );

        let header_words = match version {
            Version::Go12 => 1,
            Version::Go116 => 7,
            _ => 8,
        };
        let header_len = 8 + header_words * 8;
        let mut out = Vec::new();
        out.extend_from_slice(&magic.to_le_bytes());
        out.extend_from_slice(&[0, 0, 1, 8]);
        put(&mut out, funcs.len() as u64, 8);
        match version {
            Version::Go12 => {
                // Go 1.2: functab right after the header, names anywhere in
                // the table (offsets from its start); put them at the end.
                let names_at = header_len + funcdata.len() + funcs.len() * record_len;
                out.extend_from_slice(&funcdata);
                for (i, (_, entry, _)) in funcs.iter().enumerate() {
                    put(&mut out, *entry, 8);
                    put(&mut out, names_at as u64 + name_offsets[i], 4);
                    out.extend_from_slice(&[0; 36]);
                }
                out.extend_from_slice(&names);
                // _func offsets in functab are from the table start.
                let base = header_len + functab_len;
                for i in 0..funcs.len() {
                    let at = header_len + (2 * i + 1) * 8;
                    out[at..at + 8]
                        .copy_from_slice(&((base + i * record_len) as u64).to_le_bytes());
                }
                return out;
            }
            Version::Go116 => {
                put(&mut out, 0, 8); // nfiles
                put(&mut out, header_len as u64, 8); // funcnametab
                for _ in 0..3 {
                    put(&mut out, 0, 8); // cutab, filetab, pctab
                }
                put(&mut out, (header_len + names.len()) as u64, 8); // pclntab
            }
            Version::Go118 | Version::Go120 => {
                put(&mut out, 0, 8); // nfiles
                put(&mut out, text, 8);
                put(&mut out, header_len as u64, 8); // funcnametab
                for _ in 0..3 {
                    put(&mut out, 0, 8);
                }
                put(&mut out, (header_len + names.len()) as u64, 8);
            }
        }
        out.extend_from_slice(&names);
        out.extend_from_slice(&funcdata);
        for (i, (_, entry, _)) in funcs.iter().enumerate() {
            put(&mut out, value(*entry), field);
            put(&mut out, name_offsets[i], 4);
            out.extend_from_slice(&vec![0; record_len - field - 4]);
        }
        out
    }

    const FUNCS: &[(&str, u64, u64)] = &[
        ("runtime.text", 0x401000, 0x401020),
        ("main.main", 0x401020, 0x401100),
        ("net/http.(*Client).Do", 0x401100, 0x401180),
    ];

    #[test]
    fn every_layout_round_trips() {
        for version in [
            Version::Go12,
            Version::Go116,
            Version::Go118,
            Version::Go120,
        ] {
            let data = synthetic(version, 0x401000, FUNCS);
            let table = Pclntab::parse(&data, None).unwrap();
            assert_eq!(table.version, version);
            let got: Vec<(&str, u64, u64)> = table
                .functions()
                .map(|f| (f.name, f.entry, f.end))
                .collect();
            assert_eq!(got, FUNCS, "{version:?}");
        }
    }

    /// Go 1.26+ writes 0 as the header's text start: the caller's counts.
    #[test]
    fn relative_entries_use_the_given_text_start() {
        let mut data = synthetic(Version::Go120, 0x401000, FUNCS);
        data[24..32].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(Pclntab::header_text_start(&data), Some(0));
        let table = Pclntab::parse(&data, Some(0x401000)).unwrap();
        assert_eq!(table.functions().next().unwrap().entry, 0x401000);
    }

    #[test]
    fn rejects_what_is_not_a_table() {
        assert_eq!(
            Pclntab::parse(&[], None).unwrap_err(),
            PclntabError::Truncated
        );
        assert_eq!(
            Pclntab::parse(&[1, 2, 3, 4, 0, 0, 1, 8], None).unwrap_err(),
            PclntabError::BadMagic(0x04030201)
        );
        assert!(matches!(
            Pclntab::parse(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 3, 8], None),
            Err(PclntabError::BadHeader { .. })
        ));
    }

    /// Every truncation and every single-byte corruption of a valid table
    /// parses or fails, but never panics (bounds are checked everywhere).
    #[test]
    fn truncated_or_corrupt_tables_never_panic() {
        for version in [
            Version::Go12,
            Version::Go116,
            Version::Go118,
            Version::Go120,
        ] {
            let data = synthetic(version, 0x401000, FUNCS);
            for len in 0..data.len() {
                if let Ok(table) = Pclntab::parse(&data[..len], None) {
                    table.functions().count();
                }
            }
            for at in 0..data.len() {
                for byte in [0x00, 0x7f, 0x80, 0xff] {
                    let mut bad = data.clone();
                    bad[at] = byte;
                    if let Ok(table) = Pclntab::parse(&bad, None) {
                        table.functions().count();
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes behind a valid magic and header never panic.
        #[test]
        fn arbitrary_tables_never_panic(
            magic in proptest::sample::select(vec![0xffff_fffbu32, 0xffff_fffa, 0xffff_fff0, 0xffff_fff1]),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            text in proptest::option::of(proptest::num::u64::ANY),
        ) {
            let mut data = magic.to_le_bytes().to_vec();
            data.extend_from_slice(&[0, 0, 1, 8]);
            data.extend_from_slice(&body);
            if let Ok(table) = Pclntab::parse(&data, text) {
                table.functions().count();
            }
        }

        /// Random edits of a valid table never panic.
        #[test]
        fn mutated_tables_never_panic(
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..8),
        ) {
            let mut data = synthetic(Version::Go120, 0x401000, FUNCS);
            for (at, byte) in edits {
                let len = data.len();
                data[at % len] = byte;
            }
            if let Ok(table) = Pclntab::parse(&data, None) {
                table.functions().count();
            }
        }
    }
}
