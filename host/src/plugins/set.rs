//! The plugins loaded now, one per library file, and the reconciliation of that set against the
//! plugin folder: new files are loaded, replaced files (another device, inode, size or mtime) are
//! loaded again, removed files leave. A file that fails keeps the previous version serving and is not
//! retried until it changes again. A plugin folder or file that someone other than root or pmmux's
//! user could write ([`super::perms`]) loads nothing; what is loaded keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::loader::{is_library, FileStamp, LoadError};
use super::perms;
use super::{LoadedPlugin, Loader};
use crate::routing::registry::BUILTIN_PROTOCOLS;

/// A plugin file that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
    /// Whether an earlier version of this file keeps serving.
    pub kept_previous: bool,
}

/// What one reconciliation did.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Plugins loaded (new files or new versions), with the version they replaced.
    pub loaded: Vec<(Arc<LoadedPlugin>, Option<Arc<LoadedPlugin>>)>,
    /// Plugins whose file is gone.
    pub removed: Vec<Arc<LoadedPlugin>>,
    /// Files refused.
    pub refused: Vec<Refusal>,
    /// A file was still being written: reconcile again after the quiet period.
    pub retry: bool,
}

impl Reconciled {
    /// Whether the set of loaded plugins changed.
    pub fn changed(&self) -> bool {
        !self.loaded.is_empty() || !self.removed.is_empty()
    }
}

/// The current plugin per library file.
#[derive(Debug, Default)]
pub struct PluginSet {
    /// Only libraries whose file name starts with this are plugins.
    prefix: Option<String>,
    /// Whether a reconciliation ran before: the first one (start-up, check-config) logs each
    /// plugin at debug, for a one-line start-up; later loads are news and logged at info.
    reconciled: bool,
    current: BTreeMap<PathBuf, Arc<LoadedPlugin>>,
    refused: HashMap<PathBuf, FileStamp>,
    /// Permission refusals already reported (the folder's or a file's), so a rescan does not
    /// repeat them; cleared when the permissions are fixed.
    unsafe_perms: HashMap<PathBuf, String>,
    /// Entries named like libraries that are not regular files (FIFO, socket, device, folder,
    /// dangling symlink), already reported; cleared when the entry goes or becomes a file.
    not_files: HashMap<PathBuf, String>,
}

impl PluginSet {
    /// An empty set that takes only libraries named `prefix*` from its folder (every library
    /// with `None`).
    pub fn with_prefix(prefix: Option<String>) -> PluginSet {
        PluginSet {
            prefix,
            ..PluginSet::default()
        }
    }

    /// The loaded plugins, in file name order.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        self.current.values().cloned().collect()
    }

    /// Brings the set in line with the libraries in `dir`.
    pub fn reconcile(&mut self, loader: &Loader, dir: &Path) -> Reconciled {
        let mut out = Reconciled::default();
        let first = !std::mem::replace(&mut self.reconciled, true);
        if let Err(reason) = perms::check_dir(dir) {
            self.refuse_perms(dir, reason, !self.current.is_empty(), &mut out);
            return out;
        }
        self.unsafe_perms.remove(dir);
        let files = match library_files(dir, self.prefix.as_deref().unwrap_or("")) {
            Ok((files, not_files)) => {
                self.report_not_files(not_files, &mut out);
                files
            }
            Err(e) => {
                out.refused.push(Refusal {
                    file: dir.to_owned(),
                    reason: format!("cannot read the plugin folder: {e}"),
                    kept_previous: !self.current.is_empty(),
                });
                return out;
            }
        };
        let gone: Vec<PathBuf> = self
            .current
            .keys()
            .filter(|p| !files.iter().any(|(f, _)| f == *p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(p) = self.current.remove(&path) {
                out.removed.push(p);
            }
        }
        self.refused.retain(|path, _| files.iter().any(|(f, _)| f == path));
        self.unsafe_perms.retain(|path, _| files.iter().any(|(f, _)| f == path));
        for (path, stamp) in files {
            let previous = self.current.get(&path).cloned();
            if let Err(reason) = perms::check_file(&path) {
                self.refuse_perms(&path, reason, previous.is_some(), &mut out);
                continue;
            }
            self.unsafe_perms.remove(&path);
            if previous.as_ref().is_some_and(|p| p.stamp == stamp) || self.refused.get(&path) == Some(&stamp) {
                continue;
            }
            let started = Instant::now();
            let refuse = |reason: String| Refusal {
                file: path.clone(),
                reason,
                kept_previous: previous.is_some(),
            };
            match loader.load(&path) {
                Ok(plugin) => {
                    if let Some(clash) = self.clash(&plugin) {
                        self.refused.insert(path.clone(), stamp);
                        out.refused.push(refuse(clash));
                        continue;
                    }
                    let plugin = Arc::new(plugin);
                    let ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3);
                    let replaced = previous.as_ref().map(|p| p.version.as_str()).unwrap_or("-");
                    macro_rules! loaded {
                        ($level:ident) => {
                            tracing::$level!(
                                plugin = %plugin.name,
                                version = %plugin.version,
                                file = %path.display(),
                                protocols = ?plugin.protocols,
                                abi = plugin.abi_version,
                                replaced,
                                ms = %ms,
                                "plugin loaded"
                            )
                        };
                    }
                    if first {
                        loaded!(debug);
                    } else {
                        loaded!(info);
                    }
                    self.refused.remove(&path);
                    self.current.insert(path, Arc::clone(&plugin));
                    out.loaded.push((plugin, previous));
                }
                Err(LoadError::Changing) => {
                    tracing::debug!(file = %path.display(), "plugin file still being written; retrying after the quiet period");
                    out.retry = true;
                }
                Err(e) => {
                    self.refused.insert(path.clone(), stamp);
                    out.refused.push(refuse(e.to_string()));
                }
            }
        }
        for p in &out.removed {
            tracing::info!(plugin = %p.name, version = %p.version, file = %p.file.display(), "plugin removed");
        }
        out
    }

    /// Reports each entry that is not a regular file once (until it goes or changes kind).
    fn report_not_files(&mut self, found: Vec<(PathBuf, String)>, out: &mut Reconciled) {
        self.not_files.retain(|path, _| found.iter().any(|(p, _)| p == path));
        for (path, reason) in found {
            if self.not_files.get(&path) != Some(&reason) {
                self.not_files.insert(path.clone(), reason.clone());
                out.refused.push(Refusal {
                    kept_previous: self.current.contains_key(&path),
                    file: path,
                    reason,
                });
            }
        }
    }

    /// Reports a permission refusal unless the same one was reported last time.
    fn refuse_perms(&mut self, path: &Path, reason: String, kept_previous: bool, out: &mut Reconciled) {
        if self.unsafe_perms.get(path) != Some(&reason) {
            self.unsafe_perms.insert(path.to_owned(), reason.clone());
            out.refused.push(Refusal {
                file: path.to_owned(),
                reason,
                kept_previous,
            });
        }
    }

    /// Says which protocol of `p` is built in or provided by another file's plugin.
    fn clash(&self, p: &LoadedPlugin) -> Option<String> {
        for proto in &p.protocols {
            if BUILTIN_PROTOCOLS.contains(&proto.as_str()) {
                return Some(format!("protocol `{proto}` is built into pmmux"));
            }
            let other = self
                .current
                .values()
                .find(|o| o.file != p.file && o.protocols.contains(proto));
            if let Some(other) = other {
                return Some(format!(
                    "protocol `{proto}` is already provided by plugin `{}` ({})",
                    other.name,
                    other.file.display()
                ));
            }
        }
        None
    }
}

/// Library files in `dir` named `prefix*`, with their stamps, sorted by path, and the entries named
/// like libraries that are not regular files, with why they are refused. Only metadata is read here
/// (never `open`, which blocks on a FIFO). A missing folder holds no plugins.
#[allow(clippy::type_complexity)]
fn library_files(dir: &Path, prefix: &str) -> io::Result<(Vec<(PathBuf, FileStamp)>, Vec<(PathBuf, String)>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let (mut files, mut not_files) = (Vec::new(), Vec::new());
    for entry in entries {
        let path = entry?.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix));
        if !is_library(&path) || !named {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {
                // A file removed between listing and stat is simply not there.
                if let Ok(stamp) = FileStamp::of(&path) {
                    files.push((path, stamp));
                }
            }
            Ok(meta) => {
                let reason = format!("not a regular file ({}); not opened", kind(&meta.file_type()));
                not_files.push((path, reason));
            }
            // Gone since the listing: not there. A symlink whose target is missing or loops: refused.
            Err(e) => {
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    not_files.push((path, format!("a symbolic link that leads to no file ({e}); not opened")));
                }
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    not_files.sort();
    Ok((files, not_files))
}

/// What kind of non-regular entry this is, in words.
fn kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// Logs refusals, one line each, naming the file and the cause.
pub(crate) fn log_refusals(refused: &[Refusal]) {
    for r in refused {
        if r.kept_previous {
            tracing::error!(file = %r.file.display(), reason = %r.reason, "plugin refused; the previous version keeps serving");
        } else {
            tracing::error!(file = %r.file.display(), reason = %r.reason, "plugin refused");
        }
    }
}
