//! Reader for the IDX format MNIST ships in (big-endian header: magic, then one
//! u32 per dimension, then unsigned bytes), raw or gzip-compressed.

use super::DataError;
use flate2::bufread::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic number of an unsigned-byte IDX file with `dims` dimensions.
pub const fn magic(dims: u8) -> u32 {
    0x0800 | dims as u32
}

/// An IDX tensor of unsigned bytes.
#[derive(Debug)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Largest decompressed IDX file accepted (MNIST's largest is 47 MB), so a
/// damaged or hostile `.gz` cannot exhaust the memory.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Reads the whole file, decompressing when the name ends in `.gz`. A gzip
/// file must be gzip members to its last byte: trailing bytes are damage.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        gunzip(&raw).map_err(|reason| DataError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
    } else {
        Ok(raw)
    }
}

/// Decompresses every gzip member of `raw`; anything after the last member
/// that is not another member is an error, as is more than `MAX_DECOMPRESSED`.
pub fn gunzip(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(1 << 28));
    MultiGzDecoder::new(raw)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip stream is damaged ({e})"))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(format!(
            "decompresses to more than {MAX_DECOMPRESSED} bytes, far more than an IDX data set"
        ));
    }
    Ok(out)
}

/// Parses IDX bytes, checking the magic number and that the data length
/// matches the header exactly.
pub fn parse(path: &Path, bytes: &[u8], dims: u8, what: &'static str) -> Result<Idx, DataError> {
    let path_buf = || PathBuf::from(path);
    let header_len = 4 + 4 * dims as usize;
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path_buf(),
            expected: header_len,
            found: bytes.len(),
        });
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let found = word(0);
    if found != magic(dims) {
        return Err(DataError::BadMagic {
            path: path_buf(),
            found,
            expected: magic(dims),
            what,
        });
    }
    let shape: Vec<usize> = (1..=dims as usize).map(|i| word(i) as usize).collect();
    let expected = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| DataError::Corrupt {
            path: path_buf(),
            reason: format!(
                "the header's dimensions {shape:?} multiply to more bytes than any file can hold"
            ),
        })?;
    let data = &bytes[header_len..];
    if data.len() != expected {
        return Err(DataError::Truncated {
            path: path_buf(),
            expected,
            found: data.len(),
        });
    }
    Ok(Idx {
        dims: shape,
        data: data.to_vec(),
    })
}

/// Reads and parses one IDX file.
pub fn read(path: &Path, dims: u8, what: &'static str) -> Result<Idx, DataError> {
    parse(path, &read_bytes(path)?, dims, what)
}

/// Serialises an IDX tensor (used to write test fixtures and fetched copies).
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = magic(dims.len() as u8).to_be_bytes().to_vec();
    for &d in dims {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_members_decode_and_trailing_bytes_are_damage() {
        assert_eq!(gunzip(&gz(b"abc")).unwrap(), b"abc");
        // Concatenated members are one valid gzip stream.
        let two = [gz(b"ab"), gz(b"cd")].concat();
        assert_eq!(gunzip(&two).unwrap(), b"abcd");
        let garbage = [gz(b"abc"), b"garbage".to_vec()].concat();
        assert!(gunzip(&garbage).unwrap_err().contains("damaged"));
    }

    #[test]
    fn dimensions_that_overflow_are_corrupt() {
        let mut bytes = magic(3).to_be_bytes().to_vec();
        for d in [4u32, 1 << 31, 1 << 31] {
            bytes.extend(d.to_be_bytes());
        }
        let e = parse(Path::new("x"), &bytes, 3, "images").unwrap_err();
        assert!(e.to_string().contains("dimensions"), "{e}");
    }
}
