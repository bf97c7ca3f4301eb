//! `pmmux new-plugin NAME [DIR]`: writes a plugin crate that builds out of tree with `cargo build
//! --release` (Cargo.toml with cdylib + rlib, a detector with its tests, a README), from the
//! templates beside this file.
//!
//! Its `pmmux-plugin-api` dependency is a *path* to the plugin-api source of the pmmux checkout
//! this binary was built from (or `--plugin-api DIR`): no registry publishes pmmux-plugin-api, a
//! path needs no network, and it is exactly the ABI the host was built with. Every other
//! dependency of a plugin is one pmmux itself builds, so it is in cargo's cache and the crate also
//! builds `--offline`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.in");
const LIB_RS: &str = include_str!("scaffold/lib.rs.in");
const README: &str = include_str!("scaffold/README.md.in");

/// Why a plugin crate was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a protocol and crate name.
    #[error("plugin name `{name}`: {why}")]
    Name {
        /// The name given.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The folder exists and holds something.
    #[error("{0} exists and is not empty: give a new folder (pmmux new-plugin NAME DIR)")]
    NotEmpty(PathBuf),
    /// No plugin-api source was found.
    #[error(
        "no pmmux-plugin-api source at {0}: pass --plugin-api DIR, the plugin-api folder of a pmmux \
         checkout (the plugin builds against it)"
    )]
    NoApi(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why (in the message, not a `source`: the binary prints `{:#}`).
        error: io::Error,
    },
}

/// Checks that `name` can be a protocol name, a crate name (`pmmux-plugin-NAME`) and a library
/// name (`libpmmux_NAME.so`): lower-case ASCII letters, digits and single inner `-`, starting with
/// a letter, at most 40 characters.
pub(crate) fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let why = if name.is_empty() || name.len() > 40 {
        Some("use 1 to 40 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("start with a lower-case letter")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("use lower-case letters, digits and `-` only")
    } else if name.ends_with('-') || name.contains("--") {
        Some("no `-` at the end or twice in a row")
    } else {
        None
    };
    match why {
        Some(why) => Err(ScaffoldError::Name {
            name: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// The plugin-api source to build against: `explicit`, else the checkout this binary was built
/// from.
pub fn plugin_api_source(explicit: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let dir = match explicit {
        Some(d) => d.to_owned(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api"),
    };
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    if !manifest.lines().any(|l| l.trim() == "name = \"pmmux-plugin-api\"") {
        return Err(ScaffoldError::NoApi(dir));
    }
    Ok(std::path::absolute(&dir).map(|d| normalize(&d)).unwrap_or(dir))
}

/// `a/b/../c` as `a/c` (lexically: the path is written into the crate's Cargo.toml).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Writes the crate for plugin `name` into `dir` (created; it must not hold anything), building
/// against the plugin-api source `api`. Returns the files written.
pub fn write(name: &str, dir: &Path, api: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    check_name(name)?;
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_owned()));
    }
    let lib = format!("pmmux_{}", name.replace('-', "_"));
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    // The path goes inside a TOML basic string: escape what would end or break it.
    let api_text = api.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    let fill = |template: &str, api: &str| {
        template
            .replace("@NAME@", name)
            .replace("@LIB@", &lib)
            .replace("@TYPE@", &type_name)
            .replace("@API@", api)
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML, &api_text)),
        ("src/lib.rs", fill(LIB_RS, &api_text)),
        ("README.md", fill(README, &api.display().to_string())),
        (".gitignore", "/target\n".to_owned()),
    ];
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        let parent = path.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(|error| ScaffoldError::Write {
            path: parent.to_owned(),
            error,
        })?;
        fs::write(&path, text).map_err(|error| ScaffoldError::Write {
            path: path.clone(),
            error,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["greet", "my-proto2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Greet", "2go", "a_b", "a-", "a--b", "é", &"a".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_a_crate_and_refuses_a_used_folder() {
        let root = tempfile::tempdir().unwrap();
        let api = plugin_api_source(None).expect("this checkout's plugin-api");
        assert!(api.is_absolute() && api.ends_with("plugin-api"), "{}", api.display());
        let dir = root.path().join("my-proto");
        let files = write("my-proto", &dir, &api).unwrap();
        assert_eq!(files.len(), 4);
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let parsed: toml::Table = toml::from_str(&manifest).expect("valid TOML");
        assert_eq!(parsed["package"]["name"].as_str(), Some("pmmux-plugin-my-proto"));
        assert_eq!(parsed["lib"]["name"].as_str(), Some("pmmux_my_proto"));
        assert_eq!(
            parsed["dependencies"]["pmmux-plugin-api"]["path"].as_str(),
            Some(api.to_str().unwrap())
        );
        let lib = fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct MyProto") && lib.contains("\"my-proto\" => new_backend"));
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            for placeholder in ["@NAME@", "@LIB@", "@TYPE@", "@API@"] {
                assert!(!text.contains(placeholder), "{placeholder} left in {}", file.display());
            }
        }
        assert!(matches!(write("other", &dir, &api), Err(ScaffoldError::NotEmpty(_))));
        assert!(matches!(
            plugin_api_source(Some(root.path())),
            Err(ScaffoldError::NoApi(_))
        ));
    }
}
