//! Reader for the IDX format MNIST ships in (big-endian header: magic, then one
//! u32 per dimension, then unsigned bytes), raw or gzip-compressed.

use super::DataError;
use flate2::read::GzDecoder;
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

/// Reads the whole file, decompressing when the name ends in `.gz`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("gzip stream is damaged ({e})"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
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
    let expected = shape.iter().product::<usize>();
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
