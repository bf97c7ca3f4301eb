//! File-system watching: turns notify events on the plugin folder and the configuration file into
//! [`Signal`]s for the reloader. Which events count (docs/architecture.md §4): `cp` over a file gives only
//! Modify / Close(Write) on the same inode, `mv` one Name(To), `install` Remove then Create then
//! writes; so any Create, Modify, Remove or Close(Write) of a platform library that is not a dotfile
//! marks the folder dirty. The reloader waits for a quiet period and reconciles the whole folder, so
//! the exact event sequence never matters, and a periodic rescan heals anything missed.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::plugins::loader::is_library;

/// What the reloader is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Something changed in the plugin folder.
    PluginFolder,
    /// The configuration file changed.
    ConfigFile,
    /// Events were lost: reconcile everything.
    Rescan,
    /// SIGHUP: reload the configuration now.
    Reload,
    /// Stop the reloader.
    Shutdown,
}

/// Keeps the notify watcher alive; dropping it stops watching.
pub(crate) struct FsWatcher {
    _inner: RecommendedWatcher,
}

/// Watches `plugin_dir` and, if given, the folder holding `config_file` (editors replace files by
/// renaming, so the file itself is not watched). Failures are returned as text; the periodic rescan
/// still works without a watcher.
pub(crate) fn watch(
    plugin_dir: &Path,
    config_file: Option<&Path>,
    signals: Sender<Signal>,
) -> Result<FsWatcher, String> {
    let plugin_dir = absolute(plugin_dir);
    let config_file = config_file.map(absolute);
    let config_dir = config_file.as_ref().and_then(|f| f.parent().map(Path::to_owned));
    let (dir_for_events, file_for_events) = (plugin_dir.clone(), config_file.clone());
    let mut inner = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "file watcher error; rescanning");
                let _ = signals.send(Signal::Rescan);
                return;
            }
        };
        if event.need_rescan() {
            let _ = signals.send(Signal::Rescan);
            return;
        }
        if !is_change(&event.kind) {
            return;
        }
        for path in &event.paths {
            if path.parent() == Some(dir_for_events.as_path()) && is_library(path) {
                let _ = signals.send(Signal::PluginFolder);
            }
            if file_for_events.as_deref() == Some(path.as_path()) {
                let _ = signals.send(Signal::ConfigFile);
            }
        }
    })
    .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    if plugin_dir.is_dir() {
        inner
            .watch(&plugin_dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", plugin_dir.display()))?;
    } else {
        tracing::warn!(dir = %plugin_dir.display(), "plugin folder does not exist; it is rescanned periodically");
    }
    if let Some(dir) = config_dir.filter(|d| *d != plugin_dir) {
        inner
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    }
    Ok(FsWatcher { _inner: inner })
}

/// Events that may mean a file's content changed (reads and opens do not).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn content_changes_count_and_reads_do_not() {
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        // The loader reads each plugin file it copies: that must not trigger another reload.
        assert!(!is_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(!is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
    }
}
