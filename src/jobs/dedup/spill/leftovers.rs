//! Runs left on disk after the checkpoint a pass resumes from. A run is
//! named by a checkpoint once it is complete; a run the temporary space
//! holds that the checkpoint does not name was written after it (by the
//! run that was stopped or killed), and is removed before the pass takes
//! up the named ones, so that it is neither read nor left behind.

use std::collections::HashSet;
use std::fs;

use drainpipe_actors::TempSpace;

use super::runs::{RunError, RunInfo};

/// Removes the files of `temp` whose names start with `prefix` and end
/// with `suffix` (the runs of one kind) that `named` does not name.
pub fn remove_unnamed<'a>(
    temp: &TempSpace,
    prefix: &str,
    suffix: &str,
    named: impl IntoIterator<Item = &'a RunInfo>,
) -> Result<(), RunError> {
    let named: HashSet<&str> = named.into_iter().map(|i| i.name.as_str()).collect();
    let dir = temp.dir().map_err(|cause| RunError::Io {
        path: temp.folder().to_owned(),
        cause,
    })?;
    let io = |cause| RunError::Io {
        path: dir.clone(),
        cause,
    };
    for item in fs::read_dir(&dir).map_err(io)? {
        let name = item.map_err(io)?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(suffix) && !named.contains(&*name) {
            let path = dir.join(&*name);
            fs::remove_file(&path).map_err(|cause| RunError::Io { path, cause })?;
        }
    }
    Ok(())
}
