//! Loads one plugin library file, as docs/architecture.md §2–4 requires: copy it to a private shadow path (dlopen
//! keys on the path, and overwriting a mapped file crashes), check the copy is whole, check the ABI
//! major version and the root module's layout in both directions, then initialise it.
//!
//! Each loaded library is owned by its [`LoadedPlugin`] (the last field, dropped last): once nothing
//! holds that plugin any more — no registry, backend, connection, session, UDP flow or pending
//! detection — it is closed (`dlclose`) and its memory, and the deleted shadow copy's space in the
//! temp folder, come back. Nothing of the host keeps a pointer into a plugin past that: names and
//! versions are copied at load time, properties when a detection returns them, and every object a
//! plugin made (backends, sessions) is dropped before the plugin that made it (docs/architecture.md §4).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use abi_stable::abi_stability::abi_checking::{check_layout_compatibility_with_globals, CheckingGlobals};
use abi_stable::library::{lib_header_from_raw_library, LibraryError, RawLibrary, RootModule};
use abi_stable::std_types::RResult;
use abi_stable::StableAbi;
use pmmux_plugin_api::{PluginModRef, ABI_VERSION};

use super::logger::host_logger;

/// Why a library was refused. The loader's caller logs it with the file name.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read or copied.
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
    /// Its size or modification time changed while it was copied: still being written.
    #[error("the file changed while it was being copied (still being written?)")]
    Changing,
    /// Truncated or not a shared object for this platform.
    #[error("not a complete shared library: {0}")]
    Incomplete(String),
    /// The dynamic loader refused it.
    #[error("the dynamic loader refused it: {0}")]
    Open(String),
    /// A library, but not a pmmux plugin.
    #[error("not a pmmux plugin (it exports no pmmux root module)")]
    NotAPlugin,
    /// Built against another major version of plugin-api.
    #[error("ABI version mismatch: the plugin was built against plugin-api {plugin}, this host speaks plugin-api {host} (ABI revision {revision})")]
    AbiMajor {
        /// The plugin's plugin-api version.
        plugin: String,
        /// The host's plugin-api version.
        host: String,
        /// The host's ABI revision.
        revision: u32,
    },
    /// Same major version but a layout neither side can read.
    #[error("ABI layout mismatch: plugin-api {plugin} vs host plugin-api {host} (ABI revision {revision}): {detail}")]
    AbiLayout {
        /// The plugin's plugin-api version.
        plugin: String,
        /// The host's plugin-api version.
        host: String,
        /// The host's ABI revision.
        revision: u32,
        /// What abi_stable found different.
        detail: String,
    },
    /// The root module constructor returned an error or panicked.
    #[error("the plugin's root module constructor failed: {0}")]
    Constructor(String),
    /// The plugin's `info` entry point failed (it panicked).
    #[error("the plugin's info entry point failed: {0}")]
    Info(String),
    /// Built with `panic = "abort"`: a panic would kill the host.
    #[error("the plugin `{0}` was built with panic = \"abort\"; pmmux needs panic = \"unwind\" so a plugin panic cannot kill it")]
    PanicAbort(String),
}

/// What identifies one version of a file on disk (to notice replacements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
}

impl FileStamp {
    /// Reads the stamp of `path`.
    pub fn of(path: &Path) -> io::Result<FileStamp> {
        let meta = fs::metadata(path)?;
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        Ok(FileStamp {
            dev,
            ino,
            size: meta.len(),
            mtime: meta.modified()?,
        })
    }
}

/// A plugin library that loaded and passed every check.
pub struct LoadedPlugin {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Protocols it provides.
    pub protocols: Vec<String>,
    /// The file in the plugin folder it came from.
    pub file: PathBuf,
    /// That file's stamp when it was copied.
    pub stamp: FileStamp,
    /// ABI revision the plugin was built with.
    pub abi_version: u32,
    /// The plugin-api version the plugin was built against.
    pub api_version: String,
    /// The root module.
    pub module: PluginModRef,
    /// Sequence number of this load in the process.
    pub load_id: u64,
    /// The mapped library. Last, so it is closed after everything above (and everything holding
    /// this plugin) is gone. Held for its `Drop` only.
    #[allow(dead_code)]
    library: Mapping,
}

/// One library mapped into the process, closed on drop. Counts itself in the loader's gauges.
struct Mapping {
    library: Option<RawLibrary>,
    shadow: PathBuf,
    gauges: Arc<Gauges>,
}

/// The loader's counts of mapped libraries, shared with status and metrics.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Libraries mapped now (current versions, old ones still in use, refused ones being closed).
    pub mapped: AtomicU64,
    /// Libraries closed since start.
    pub unmapped: AtomicU64,
    /// Libraries closed whose file glibc still keeps mapped (a plugin registered thread-local
    /// destructors; they unmap when those threads end). Measured at close through `/proc/self/maps`.
    pub kept_mapped: AtomicU64,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // dlclose; safe now: whoever could call into it held this mapping (docs/architecture.md §4).
        drop(self.library.take());
        self.gauges.mapped.fetch_sub(1, Ordering::Relaxed);
        self.gauges.unmapped.fetch_add(1, Ordering::Relaxed);
        if still_mapped(&self.shadow) {
            self.gauges.kept_mapped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(shadow = %self.shadow.display(), "plugin version closed but still mapped: it registered thread-local destructors, which keep it until their threads end");
        } else {
            tracing::debug!(shadow = %self.shadow.display(), "plugin version unmapped");
        }
    }
}

/// Whether `/proc/self/maps` still lists `shadow` (Linux; elsewhere: unknown, so no).
fn still_mapped(shadow: &Path) -> bool {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let needle = shadow.to_string_lossy();
    maps.lines().any(|l| l.contains(needle.as_ref()))
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("load_id", &self.load_id)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("protocols", &self.protocols)
            .field("file", &self.file)
            .field("abi_version", &self.abi_version)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

/// Loads plugin files through private shadow copies.
#[derive(Debug)]
pub struct Loader {
    shadow_dir: PathBuf,
    loads: AtomicU64,
    gauges: Arc<Gauges>,
}

/// Whether a directory entry looks like a library of this platform (dotfiles are ignored: editors and
/// installers write temporaries there).
pub(crate) fn is_library(path: &Path) -> bool {
    let ext = if cfg!(target_os = "windows") {
        "dll"
    } else if cfg!(target_os = "macos") {
        "dylib"
    } else {
        "so"
    };
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden && path.extension().and_then(|e| e.to_str()) == Some(ext)
}

impl Loader {
    /// A loader whose shadow copies go into a fresh private folder under the system temp dir.
    pub fn new() -> io::Result<Loader> {
        let base = std::env::temp_dir();
        sweep_dead_shadows(&base);
        for attempt in 0..100u32 {
            let dir = base.join(format!("pmmux-shadow-{}-{attempt}", std::process::id()));
            match create_private_dir(&dir) {
                Ok(()) => {
                    return Ok(Loader {
                        shadow_dir: dir,
                        loads: AtomicU64::new(0),
                        gauges: Arc::default(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no free shadow folder name"))
    }

    /// Libraries mapped now, closed so far, and closed but kept mapped by glibc.
    pub fn gauges(&self) -> Arc<Gauges> {
        Arc::clone(&self.gauges)
    }

    /// The folder holding shadow copies.
    pub fn shadow_dir(&self) -> &Path {
        &self.shadow_dir
    }

    /// Loads `file`, or says why not. Never maps the file itself, only a private copy.
    pub fn load(&self, file: &Path) -> Result<LoadedPlugin, LoadError> {
        let loaded = self.load_inner(file);
        release_freed_memory();
        loaded
    }

    fn load_inner(&self, file: &Path) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        let load_id = self.loads.fetch_add(1, Ordering::Relaxed) + 1;
        let stamp = FileStamp::of(file)?;
        let bytes = read_regular(file)?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
        let ext = file.extension().and_then(|s| s.to_str()).unwrap_or("so");
        let shadow = self.shadow_dir.join(format!("{stem}.{load_id}.{ext}"));
        let after = FileStamp::of(file)?;
        if after != stamp || bytes.len() as u64 != stamp.size {
            return Err(LoadError::Changing);
        }
        super::complete::check_complete(&bytes).map_err(LoadError::Incomplete)?;
        fs::write(&shadow, &bytes)?;
        let result = self.load_shadow(&shadow);
        // Safe once mapped (docs/architecture.md §4), and keeps the shadow folder from growing.
        let _ = fs::remove_file(&shadow);
        let (module, info, api_version, library) = result?;
        if !info.panic_unwind {
            return Err(LoadError::PanicAbort(info.name.into()));
        }
        let plugin = LoadedPlugin {
            name: info.name.into(),
            version: info.version.into(),
            protocols: info.protocols.into_iter().map(Into::into).collect(),
            file: file.to_owned(),
            stamp,
            abi_version: module.abi_version(),
            api_version,
            module,
            load_id,
            library,
        };
        tracing::debug!(file = %file.display(), ms = started.elapsed().as_secs_f64() * 1e3, "plugin file loaded");
        Ok(plugin)
    }

    fn load_shadow(
        &self,
        shadow: &Path,
    ) -> Result<(PluginModRef, pmmux_plugin_api::PluginInfo, String, Mapping), LoadError> {
        let raw = RawLibrary::load_at(shadow).map_err(|e| LoadError::Open(e.to_string()))?;
        self.gauges.mapped.fetch_add(1, Ordering::Relaxed);
        let mapping = Mapping {
            library: Some(raw),
            shadow: shadow.to_owned(),
            gauges: Arc::clone(&self.gauges),
        };
        let Some(raw) = mapping.library.as_ref() else {
            return Err(LoadError::Open("library closed while loading".into()));
        };
        // SAFETY: the header points into the library, which `mapping` keeps open; it is only used
        // while `mapping` lives (here, and through the module kept beside it in `LoadedPlugin`).
        let header = unsafe { lib_header_from_raw_library(raw) }.map_err(|e| match e {
            LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin,
            other => LoadError::Open(other.to_string()),
        })?;
        let host_version = <PluginModRef as RootModule>::VERSION_STRINGS;
        let plugin_version = header.version_strings();
        let (host_str, plugin_str) = (host_version.version.to_string(), plugin_version.version.to_string());
        let same_major = match (host_version.parsed(), plugin_version.parsed()) {
            (Ok(h), Ok(p)) => h.major == p.major && (h.major != 0 || h.minor == p.minor),
            _ => false,
        };
        if !same_major {
            return Err(LoadError::AbiMajor {
                plugin: plugin_str,
                host: host_str,
                revision: ABI_VERSION,
            });
        }
        let layout_error = |detail: String| LoadError::AbiLayout {
            plugin: plugin_str.clone(),
            host: host_str.clone(),
            revision: ABI_VERSION,
            detail,
        };
        let plugin_layout = header
            .layout()
            .ok_or_else(|| layout_error("the library carries no layout to check".into()))?;
        let host_layout = <PluginModRef as StableAbi>::LAYOUT;
        // abi_stable's own check refuses an older plugin in a newer host; accept either side being the
        // older one, since appended prefix fields are read as optional (docs/architecture.md §3).
        if let Err(forward) =
            check_layout_compatibility_with_globals(host_layout, plugin_layout, &CheckingGlobals::new())
        {
            check_layout_compatibility_with_globals(plugin_layout, host_layout, &CheckingGlobals::new())
                .map_err(|_| layout_error(first_line(&forward.to_string())))?;
        }
        // SAFETY: the layout was checked just above, in whichever direction is the older one.
        let module =
            unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }.map_err(|e| match e {
                LibraryError::RootModule { .. } => LoadError::Constructor(root_module_error(&e.to_string())),
                other => layout_error(other.to_string()),
            })?;
        (module.set_logger())(host_logger());
        let info = match (module.info())() {
            RResult::ROk(info) => info,
            RResult::RErr(e) => return Err(LoadError::Info(e.into())),
        };
        Ok((module, info, plugin_str, mapping))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.shadow_dir);
    }
}

/// Gives the heap memory freed by a load back to the system. A load reads the whole library (MBs)
/// into a buffer; glibc then raises its mmap and trim thresholds to that size, so later buffers of
/// that size come from the heap and up to twice that stays resident after they are freed
/// (*measured*: RSS settled 16 MiB above the start over 200 replaces of an 18 MB plugin).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Reads a plugin file whole, refusing anything but a regular file without blocking on it: opened
/// non-blocking (a FIFO or device opens at once instead of waiting for a writer) and checked on the
/// open descriptor, so an entry swapped for a FIFO after the folder was listed is refused too.
fn read_regular(file: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let mut f = options.open(file)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; not read",
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// abi_stable reports a failed constructor over several lines; keep what follows "the error:".
fn root_module_error(text: &str) -> String {
    let tail = text.split_once("the error:").map_or(text, |(_, rest)| rest);
    tail.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // abi_stable's report is long; keep the lines that say what differs.
    let useful: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            l.contains("Expected")
                || l.contains("Found")
                || l.contains("Error")
                || l.contains("error")
                || l.contains("different")
        })
        .take(4)
        .collect();
    if useful.is_empty() {
        lines.into_iter().take(2).collect::<Vec<_>>().join(" ")
    } else {
        useful.join(" ")
    }
}

/// Removes shadow folders left by pmmux processes that no longer exist (killed with SIGKILL, so
/// their `Drop` never ran). Only folders named `pmmux-shadow-<pid>-<n>` whose pid is gone.
fn sweep_dead_shadows(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("pmmux-shadow-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0 && pid != std::process::id() as i32 && !process_exists(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(unix)]
fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_exists(_pid: i32) -> bool {
    true
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir(dir)
    }
}
