//! Reading a scenario: bytes → UTF-8 text → TOML → `Scenario`, with
//! `--set key.path=value` overrides. Every error names the file, the line
//! and column (or the byte offset), the key path and what is allowed.

use super::schema::{AlgorithmKind, Scenario};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A scenario problem, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem is in the file's text.
    pub position: Option<(usize, usize)>,
    /// Dotted key path such as `training.learning_rate`.
    pub key: Option<String>,
    pub message: String,
}

impl ScenarioError {
    pub(crate) fn new(file: &Path, key: Option<String>, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            position: None,
            key,
            message,
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// 1-based line and column of a byte offset (clamped to the text, and to the
/// start of the character it falls in).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Byte span of a dotted key (TOML quoting allowed: `sweep."runtime.jitter"`)
/// in the document, for locating semantic errors.
pub(crate) fn key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let parts = toml_edit::Key::parse(key).ok()?;
    let mut item = doc.as_item();
    let mut span = None;
    for part in &parts {
        let (k, v) = item.as_table_like()?.get_key_value(part.get())?;
        span = k.span().or(v.span()).or(span);
        item = v;
    }
    span
}

fn explain(message: &str) -> String {
    let message = message.trim().trim_end_matches('\n').to_string();
    if message.starts_with("unknown field") {
        format!("{message}; remove or rename the key")
    } else {
        message
    }
}

fn path_string(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    (s != "." && !s.is_empty()).then_some(s)
}

/// Parses a scenario from text. `file` is used in error messages only.
pub fn parse(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
    let de = toml::Deserializer::new(text);
    let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|err| {
        let key = path_string(err.path());
        let inner = err.inner();
        ScenarioError {
            file: file.to_path_buf(),
            position: inner.span().map(|s| line_col(text, s.start)),
            key,
            message: explain(inner.message()),
        }
    })?;
    let mut scenario = scenario;
    if scenario.algorithm.kind == AlgorithmKind::SpikingPc && scenario.algorithm.spiking.is_none() {
        scenario.algorithm.spiking = Some(Default::default());
    }
    if let Some(key) = array_for_table(text, &scenario) {
        return Err(ScenarioError {
            file: file.to_path_buf(),
            position: key_span(text, &key).map(|s| line_col(text, s.start)),
            message: format!(
                "is a table: write it as [{key}] with named keys (or as an inline table {{ key = value, … }}), not as an array"
            ),
            key: Some(key),
        });
    }
    Ok(scenario)
}

/// serde lets an array stand for a struct (`training = [5, 7, 0.5]` sets the
/// fields in declaration order), which is never what a person meant: the
/// first key whose value is an array where the schema has a table.
fn array_for_table(text: &str, scenario: &Scenario) -> Option<String> {
    fn walk(input: &toml::Table, resolved: &toml::Table, prefix: &str) -> Option<String> {
        for (k, v) in input {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            // `[sweep]` holds arbitrary values; `actor_compute` arbitrary names.
            if path == "sweep" {
                continue;
            }
            match (v, resolved.get(k)) {
                (toml::Value::Array(_), Some(toml::Value::Table(_))) => return Some(path),
                (toml::Value::Table(a), Some(toml::Value::Table(b))) => {
                    if let Some(p) = walk(a, b, &path) {
                        return Some(p);
                    }
                }
                _ => {}
            }
        }
        None
    }
    let input: toml::Table = text.parse().ok()?;
    let toml::Value::Table(resolved) = toml::Value::try_from(scenario).ok()? else {
        return None;
    };
    walk(&input, &resolved, "")
}

/// A `--set` value: TOML (`3`, `0.5`, `"relu"`, `[784, 10]`, `{ kind = "fixed" }`)
/// that must make up the whole text, or a bare word taken as a string
/// (`relu`, `../data/mnist`). Anything else — an unterminated string, a
/// second line, a broken array — is an error rather than a string.
fn parse_value(raw: &str) -> Result<toml_edit::Value, String> {
    if raw.is_empty() {
        return Err("the value is empty; write KEY=VALUE, e.g. training.epochs=1".into());
    }
    let toml_error = match raw.parse::<toml_edit::Value>() {
        Ok(mut v) => {
            v.decor_mut().clear();
            return Ok(v);
        }
        Err(e) => e,
    };
    let bare = !raw.starts_with(['"', '\'', '[', '{', '+', '-'])
        && !raw
            .chars()
            .any(|c| c.is_control() || "\"'[]{}=#".contains(c));
    let why = match toml_error.message().trim() {
        "" => "text follows the value",
        m => m,
    };
    if bare {
        Ok(raw.into())
    } else {
        Err(format!(
            "`{}` is not a TOML value ({why}); quote strings (\"text\"), write arrays as [1, 2] and tables as {{ key = value }}",
            raw.escape_debug(),
        ))
    }
}

/// Applies `key.path=value` overrides to the scenario text and parses the
/// result. Values are TOML; a bare word is taken as a string.
pub fn parse_with_overrides(
    text: &str,
    file: &Path,
    overrides: &[String],
) -> Result<Scenario, ScenarioError> {
    // The file alone first, so its own errors point into its text.
    let base = parse(text, file)?;
    if overrides.is_empty() {
        return Ok(base);
    }
    let text = apply_overrides(text, file, overrides, "--set")?;
    parse(&text, file).map_err(|mut e| {
        e.message = format!("{} (after applying --set overrides)", e.message);
        e.position = None;
        e
    })
}

/// The scenario text with `key.path=value` overrides written into it;
/// `origin` (`--set`, `sweep`) prefixes the error messages.
pub(crate) fn apply_overrides(
    text: &str,
    file: &Path,
    overrides: &[String],
    origin: &str,
) -> Result<String, ScenarioError> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| ScenarioError::new(file, None, e.to_string()))?;
    for ov in overrides {
        let err = |key: Option<String>, message: String| {
            ScenarioError::new(
                file,
                key,
                format!("{origin} {}: {message}", ov.escape_debug()),
            )
        };
        let (key, value) = ov
            .split_once('=')
            .ok_or_else(|| err(None, "expected KEY=VALUE, e.g. training.epochs=1".into()))?;
        let key = key.trim();
        let parts = toml_edit::Key::parse(key)
            .ok()
            .filter(|p| !p.is_empty() && p.iter().all(|k| !k.get().is_empty()))
            .ok_or_else(|| {
                err(
                    None,
                    format!("`{key}` is not a dotted key path such as training.epochs"),
                )
            })?;
        let value = parse_value(value.trim()).map_err(|m| err(Some(key.to_string()), m))?;
        let mut table = doc.as_table_mut() as &mut dyn toml_edit::TableLike;
        for part in &parts[..parts.len() - 1] {
            let entry = table.entry(part.get()).or_insert(toml_edit::table());
            table = entry.as_table_like_mut().ok_or_else(|| {
                err(
                    Some(key.to_string()),
                    format!("`{}` is a value, not a table", part.get()),
                )
            })?;
        }
        table.insert(parts[parts.len() - 1].get(), toml_edit::value(value));
    }
    Ok(doc.to_string())
}

/// The file's bytes as text; a file that is not UTF-8 gets the line, column
/// and byte offset of its first bad byte.
pub(crate) fn decode(bytes: Vec<u8>, file: &Path) -> Result<String, ScenarioError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let prefix = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        ScenarioError {
            file: file.to_path_buf(),
            position: Some(line_col(prefix, at)),
            key: None,
            message: format!(
                "not UTF-8 text: byte {:#04x} at byte offset {at} does not start a valid character; save the file as UTF-8",
                bytes[at]
            ),
        }
    })
}

/// Reads a scenario file's text; `-` is standard input.
pub(crate) fn read(file: &Path) -> Result<String, ScenarioError> {
    let mut bytes = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(file).map(|b| bytes = b)
    };
    read.map_err(|e| {
        ScenarioError::new(file, None, format!("cannot read the scenario file: {e}"))
    })?;
    decode(bytes, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_whole_toml_values_or_bare_words() {
        let ok = |raw: &str| parse_value(raw).unwrap().to_string();
        assert_eq!(ok("3"), "3");
        assert_eq!(ok("[784, 10]"), "[784, 10]");
        assert_eq!(ok("\"relu\""), "\"relu\"");
        assert_eq!(ok("{ kind = \"fixed\" }"), "{ kind = \"fixed\" }");
        assert_eq!(ok("relu"), "\"relu\"");
        assert_eq!(ok("../shared/data/mnist"), "\"../shared/data/mnist\"");
        for bad in [
            "1\nname=\"x\"",
            "\"x",
            "[1, 2",
            "{ a = }",
            "",
            "-x",
            "a=b",
            "a # b",
        ] {
            assert!(parse_value(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn positions_stay_inside_characters() {
        let text = "a = \"é\"\nb";
        assert_eq!(line_col(text, 6), (1, 6));
        assert_eq!(line_col(text, 1000), (2, 2));
        assert_eq!(
            key_span("[sweep]\n\"a.b\" = [1]\n", "sweep.\"a.b\""),
            Some(8..13)
        );
    }

    #[test]
    fn bad_utf8_is_located() {
        let e = decode(b"ab\ncd\xffe".to_vec(), Path::new("f.toml")).unwrap_err();
        assert_eq!(e.position, Some((2, 3)));
        assert!(e.message.contains("byte offset 5"), "{}", e.message);
    }
}
