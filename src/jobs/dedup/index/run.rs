//! A run's part in its indexes ([`IndexRun`]): opens the indexes it runs
//! against before any work (parameters and files checked), hooks into
//! passes 1 and 2 ([`super::hooks`]), makes the clusters joined with the
//! indexed ones, and writes the index it saves as one set once the run's
//! outputs are committed.
//!
//! Nothing of an index is held whole: its band runs stream into pass 1's
//! merge, the shingle sets of its records in pairs across are held within
//! their share and past it go to sorted runs read back by pass 2
//! ([`super::hooks::IndexedSets`]), its roots are read front to back (for the indexed records pass 2
//! joined, and to write the grown index's roots), its words and ids a
//! block at a time for the records that need them.
//!
//! Nor is this run's part of the clusters, under `--keep first` past their
//! share: the pairs across are relabeled to their roots in place (sorted
//! by indexed record, the roots read beside them), the joined pairs made
//! into components with sorted runs, and the grown index's roots written
//! from the removed records read in record order, the few indexed roots
//! joined to an earlier one looked up in a sorted list. What is held is
//! the pairs across (16 bytes each, as pass 2 verified them, until the
//! components have read them). The records removed as indexed records'
//! duplicates are named with their roots' ids by a sort by root joined
//! with the ids read in order, then sorted back by record, held through
//! pass 3 within their share or in one run on disk
//! ([`crate::jobs::dedup::spill::indexed`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;

use crate::jobs::dedup::chain::{BandsHook, RecordHook};
use crate::jobs::dedup::clusters::{Clusters, Prefers, StopCheck};
use crate::jobs::dedup::params::{Banding, DedupParams};
use crate::jobs::dedup::shingle::shingle_set_of_words;

use super::files::{self, Block, IdsReader, Part, RootsReader, RootsWriter, SegmentWriter};
use super::hooks::{IndexBands, IndexedSets, JoinedBands, Joiner};
use super::manifest::{Segment, MANIFEST_FILE};
use super::{IndexError, IndexOptions, IndexParams, Manifest};
use crate::jobs::dedup::spill::components::RemovedRecord;
use crate::jobs::dedup::spill::indexed::NameError;
use crate::jobs::dedup::spill::runs::{RunError, RunInfo};
use crate::jobs::dedup::spill::verified::VerifiedPairs;
use drainpipe_actors::TempSpace;

/// An index the run is against, numbered from `offset` among the run's
/// indexed records.
#[derive(Debug)]
struct Opened {
    dir: PathBuf,
    manifest: Manifest,
    offset: u32,
}

/// The index being saved, in its temporary folder.
#[derive(Debug)]
struct Draft {
    target: PathBuf,
    temp: tempfile::TempDir,
    bands: Vec<RunInfo>,
    segment: Option<Segment>,
    /// `.NAME.index-lock` beside the target, held until the draft is
    /// committed or dropped: one run at a time writes an index.
    _lock: drainpipe_actors::FolderLock,
}

/// The run's indexes: those it is against, the one it saves.
#[derive(Debug)]
pub struct IndexRun {
    params: IndexParams,
    opened: Vec<Opened>,
    /// Indexed records, all indexes together: this run's first record is
    /// numbered `offset` in the joined numbering.
    offset: u32,
    draft: Option<Draft>,
    bands: Arc<JoinedBands>,
    joiner: Option<Arc<Joiner>>,
    /// Indexed roots joined to an earlier root through this run.
    relabeled: Vec<(u32, u32)>,
    cross_pairs: u64,
    cross_checked: u64,
    /// Bytes of the runs the indexed records' sets went to, and the most
    /// they held in memory ([`IndexedSets::peak_bytes`]).
    sets_spilled: (u64, u64),
}

/// Opens `dir` as an index for a run with `here`: its manifest, checked
/// against `here` (exit 2 naming each difference).
pub fn open_checked(dir: &Path, here: &IndexParams) -> Result<Manifest, IndexError> {
    let manifest = Manifest::read(dir)?;
    manifest.check(dir, here)?;
    Ok(manifest)
}

impl IndexRun {
    /// The records of the indexes the run is against, numbered before its
    /// own.
    pub fn indexed_records(&self) -> u64 {
        u64::from(self.offset)
    }

    /// The run's indexes (`None` without `--against` or `--save-index`):
    /// each index it is against opened and checked (its manifest, its
    /// files' sizes, a band run per band); the folder to save into refused
    /// if it exists.
    pub fn open(
        options: &IndexOptions,
        params: &DedupParams,
        banding: Banding,
    ) -> Result<Option<IndexRun>, IndexError> {
        if options.is_empty() {
            return Ok(None);
        }
        let here = IndexParams::of(params, banding);
        let draft = options.save.as_deref().map(Draft::start).transpose()?;
        let (mut opened, mut offset) = (Vec::new(), 0u64);
        for dir in &options.against {
            let manifest = open_checked(dir, &here)?;
            if manifest.bands.len() != banding.bands {
                let why = format!(
                    "{} band runs for {} bands",
                    manifest.bands.len(),
                    banding.bands
                );
                return Err(IndexError::damaged(dir, MANIFEST_FILE, why));
            }
            let records = manifest.records;
            opened.push(Opened {
                dir: dir.clone(),
                manifest,
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
            });
            offset += records;
            if offset > u64::from(u32::MAX) {
                return Err(IndexError::Refused(
                    "the indexes hold more than 2^32 records together".into(),
                ));
            }
        }
        let offset = offset as u32;
        let indexes = opened
            .iter()
            .map(|o| IndexBands {
                dir: o.dir.clone(),
                runs: o.manifest.bands.clone(),
                offset: o.offset,
            })
            .collect();
        let save_to = draft.as_ref().map(|d| d.temp.path().to_path_buf());
        Ok(Some(IndexRun {
            params: here,
            opened,
            offset,
            bands: Arc::new(JoinedBands::new(indexes, offset, save_to)),
            draft,
            joiner: None,
            relabeled: Vec::new(),
            cross_pairs: 0,
            cross_checked: 0,
            sets_spilled: (0, 0),
        }))
    }

    /// Why pass 1 could not read an index's band run (the index is damaged
    /// or unreadable: exit 65 or 74), when that is why it failed.
    pub fn damage(&self) -> Option<IndexError> {
        self.bands.take_damage()
    }

    /// Pass 1's hook.
    pub fn bands_hook(&self) -> Arc<dyn BandsHook> {
        Arc::clone(&self.bands) as Arc<dyn BandsHook>
    }

    /// After pass 1 (which wrote the saved index's band runs): reads the
    /// sets of the indexed records that share a bucket with the run's,
    /// within `share` bytes (`None`: no budget; past it, to sorted runs in
    /// `temp`: [`IndexedSets::read`]), and makes pass 2's hook.
    pub fn after_signatures(
        &mut self,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
    ) -> anyhow::Result<Arc<dyn RecordHook>> {
        let started = std::time::Instant::now();
        let out = self
            .bands
            .take()
            .context("pass 1 ended without the index's bands")?;
        if let Some(draft) = &mut self.draft {
            draft.bands = out.bands;
        }
        let mut cross = out.cross;
        // The order pass 2 reads them in, that of the spilled sets' runs.
        cross.sort_unstable_by_key(|&(a, b)| (b, a));
        let mut needed: Vec<u32> = cross.iter().map(|&(a, _)| a).collect();
        needed.sort_unstable();
        needed.dedup();
        let ngram = self.params.ngram as usize;
        let sets = IndexedSets::read(&cross, (share, temp), |keep| {
            self.read_part(Part::Words, &needed, &mut |record, block, at| {
                if let Block::Words(words) = block {
                    keep(record, shingle_set_of_words(words.get(at), ngram));
                }
            })
        })?;
        let indexed = needed.len();
        drop(needed);
        let writer = match &self.draft {
            Some(draft) => {
                let number = self.opened.iter().map(|o| o.manifest.segments.len()).sum();
                let path = draft.temp.path();
                Some(
                    SegmentWriter::create(path, number, self.offset.into())
                        .with_context(|| format!("writing the index {}", draft.target.display()))?,
                )
            }
            None => None,
        };
        log::info!(
            "dedup index: {} pairs across, the sets of {indexed} indexed records read in {:.2} s \
             ({} in memory, {} bytes written to sorted runs)",
            cross.len(),
            started.elapsed().as_secs_f64(),
            sets.memory.len(),
            sets.spilled_bytes(),
        );
        self.cross_pairs = cross.len() as u64;
        self.sets_spilled = (sets.spilled_bytes(), sets.peak_bytes);
        let joiner = Arc::new(Joiner::new(self.params.threshold, cross, sets, writer));
        self.joiner = Some(Arc::clone(&joiner));
        Ok(joiner)
    }

    /// After pass 2: the clusters of this run's verified `pairs` joined
    /// with the indexed ones, each record removed as a duplicate of an
    /// indexed record named with that record's id and index. `prefers`:
    /// the `--keep` order over this run's records, for the clusters
    /// without an indexed record ([`Clusters::with_index_keeping`]).
    /// Within `share` bytes (`None`: no budget) under `--keep first`,
    /// past it with sorted runs in `temp` ([`Clusters::with_index_stream`]).
    pub fn clusters(
        &mut self,
        pairs: &VerifiedPairs,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        records_read: u64,
        (prefers, stop): (Option<&Prefers<'_>>, &StopCheck<'_>),
    ) -> anyhow::Result<Clusters> {
        let joiner = self
            .joiner
            .take()
            .context("pass 2 ran without the index's hook")?;
        let mut state = joiner.take();
        state.fill_to(records_read);
        if let Some(e) = state.error.take() {
            return Err(e).context("writing the index's words and ids");
        }
        if let Some(e) = state.read_error.take() {
            return Err(e.into_io()).context("reading the indexed records' sets back from disk");
        }
        // Every pair across was verified: the sets' runs are of no more use.
        if let Some(spill) = &mut state.sets.spill {
            spill
                .remove_all()
                .context("removing the indexed records' sets from disk")?;
        }
        if state.unverifiable > 0 {
            // An input that changed under the run: an IO failure (exit 74).
            return Err(std::io::Error::other(format!(
                "{} pairs with indexed records could not be verified: the input changed during the run",
                state.unverifiable
            ))
            .into());
        }
        if let (Some(writer), Some(draft)) = (state.writer.take(), &mut self.draft) {
            draft.segment = Some(
                writer
                    .finish()
                    .context("writing the index's sets and ids")?,
            );
        }
        self.cross_checked = state.checked;
        let mut cross = std::mem::take(&mut state.verified);
        drop(state);
        self.to_roots(&mut cross)?;
        let (mut clusters, relabeled) = Clusters::with_index_stream(
            pairs.reader(temp),
            pairs.len(),
            (cross, self.offset),
            (share, temp),
            (prefers, stop),
        )
        .map_err(|e| match e {
            // Said as a stop by the caller, not as an IO error.
            RunError::Stopped => anyhow::Error::new(e),
            e => anyhow::Error::new(e.into_io())
                .context("dedup: making the clusters of the verified pairs"),
        })?;
        self.relabeled = relabeled;
        self.name_indexed(&mut clusters, (share, temp), stop)?;
        Ok(clusters)
    }

    /// Names the records `clusters` removed as indexed records'
    /// duplicates with their roots' ids and indexes' names
    /// ([`crate::jobs::dedup::spill::indexed::RemovedAsIndexed::name`]),
    /// the ids read in root order from each index's blocks: each block
    /// once, never a read per record.
    fn name_indexed(
        &self,
        clusters: &mut Clusters,
        within: (Option<u64>, &Arc<TempSpace>),
        stop: &StopCheck<'_>,
    ) -> anyhow::Result<()> {
        let names: Vec<(u32, Arc<str>)> = (self.opened.iter())
            .map(|o| (o.offset, o.manifest.name.as_str().into()))
            .collect();
        let mut readers: Vec<IdsReader<'_>> = (self.opened.iter())
            .map(|o| IdsReader::new(&o.dir, &o.manifest.segments))
            .collect();
        let ids = |root: u32, out: &mut String| -> Result<(), IndexError> {
            let number = self.index_number(root);
            let local = root - self.opened[number].offset;
            out.push_str(readers[number].id(local)?.unwrap_or("null"));
            Ok(())
        };
        clusters
            .indexed
            .name(ids, names, within, stop)
            .map_err(|e| match e {
                // Said as a stop by the caller, not as an IO error.
                NameError::Spill(RunError::Stopped) => anyhow::Error::new(RunError::Stopped),
                NameError::Spill(e) => anyhow::Error::new(e.into_io())
                    .context("dedup: naming the records removed as indexed records' duplicates"),
                NameError::Ids(e) => anyhow::Error::new(e),
            })
    }

    /// Each pair's indexed record (joined numbering) replaced by its
    /// cluster's root, read front to back from each index's roots, as far
    /// as the last one wanted: the pairs sorted by indexed record, in
    /// place, nothing else held.
    fn to_roots(&self, pairs: &mut [(u32, u32, f64)]) -> Result<(), IndexError> {
        pairs.sort_unstable_by_key(|&(a, b, _)| (a, b));
        let mut at = 0;
        for index in &self.opened {
            let end = u64::from(index.offset) + index.manifest.records;
            if pairs.get(at).is_none_or(|&(r, ..)| u64::from(r) >= end) {
                continue;
            }
            let manifest = &index.manifest;
            let mut reader = RootsReader::open(&index.dir, &manifest.roots, manifest.records)?;
            let mut record = index.offset;
            while pairs.get(at).is_some_and(|p| u64::from(p.0) < end) {
                let Some(root) = reader.next_root()? else {
                    break;
                };
                while let Some(pair) = pairs.get_mut(at).filter(|p| p.0 == record) {
                    pair.0 = root + index.offset;
                    at += 1;
                }
                record += 1;
            }
        }
        Ok(())
    }

    /// The number of the index that holds joined record `record`.
    fn index_number(&self, record: u32) -> usize {
        let i = self.opened.partition_point(|o| o.offset <= record);
        i.saturating_sub(1)
    }

    /// Reads `part` of the `wanted` records (joined numbering, sorted),
    /// index by index, block by block.
    fn read_part(
        &self,
        part: Part,
        wanted: &[u32],
        visit: &mut dyn FnMut(u32, &mut Block, usize),
    ) -> Result<(), IndexError> {
        for index in &self.opened {
            let end = u64::from(index.offset) + index.manifest.records;
            let local: Vec<u32> = wanted
                .iter()
                .filter(|&&r| r >= index.offset && u64::from(r) < end)
                .map(|&r| r - index.offset)
                .collect();
            for segment in &index.manifest.segments {
                files::read_blocks(&index.dir, segment, part, &local, &mut |r, block, at| {
                    visit(r + index.offset, block, at)
                })?;
            }
        }
        Ok(())
    }

    /// Writes the saved index (if any) as one set: the run's `clusters`
    /// over its `records_read` records. Returns the summary's account of
    /// the indexes.
    pub fn finish(
        self,
        clusters: &Clusters,
        records_read: u64,
    ) -> anyhow::Result<serde_json::Value> {
        let against: Vec<serde_json::Value> = self
            .opened
            .iter()
            .map(|o| {
                json!({
                    "index": o.manifest.name,
                    "dir": o.dir.display().to_string(),
                    "records": o.manifest.records,
                    "fingerprint": o.manifest.fingerprint,
                })
            })
            .collect();
        let mut summary = json!({
            "against": against,
            "pairs_across": self.cross_pairs,
            "pairs_across_checked": self.cross_checked,
            "indexed_sets_spilled_bytes": self.sets_spilled.0,
            "indexed_sets_peak_bytes": self.sets_spilled.1,
            "removed_as_indexed": clusters.indexed.len(),
            "removed_as_indexed_spilled_bytes": clusters.indexed.spilled_bytes(),
        });
        if let Some(saved) = self.save(clusters, records_read)? {
            summary["saved"] = saved;
        }
        Ok(summary)
    }

    fn save(
        mut self,
        clusters: &Clusters,
        records_read: u64,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        let Some(mut draft) = self.draft.take() else {
            return Ok(None);
        };
        let relabeled = std::mem::take(&mut self.relabeled);
        let dir = draft.temp.path().to_path_buf();
        let offset = self.offset;
        let mut roots = RootsWriter::create(&dir)?;
        // The indexed records' roots, relabeled where this run joined
        // their clusters to an earlier one.
        for index in &self.opened {
            let manifest = &index.manifest;
            let mut reader = RootsReader::open(&index.dir, &manifest.roots, manifest.records)?;
            while let Some(root) = reader.next_root()? {
                let root = root + index.offset;
                roots.push(relabeled_root(&relabeled, root))?;
            }
        }
        drop(relabeled);
        // This run's: its own unless removed, read in record order from
        // the removed records and those removed as indexed records'
        // duplicates (the indexed cluster's root last, as it decides).
        let mut removed = clusters.removed.iter().peekable();
        let mut indexed = clusters.indexed.records().peekable();
        for r in 0..records_read as u32 {
            let mut root = offset + r;
            while let Some(next) = removed.next_if(|m| m.as_ref().map_or(true, |m| m.0 <= r)) {
                let (m, kept, _): RemovedRecord = next.map_err(RunError::into_io)?;
                if m == r {
                    root = offset + kept;
                }
            }
            while let Some(next) = indexed.next_if(|x| x.as_ref().map_or(true, |x| x.0 <= r)) {
                let (x, indexed_root, _): RemovedRecord = next.map_err(RunError::into_io)?;
                if x == r {
                    root = indexed_root;
                }
            }
            roots.push(root)?;
        }
        let roots_file = roots.finish()?;
        let mut segments = Vec::new();
        for index in &self.opened {
            for segment in &index.manifest.segments {
                let number = segments.len();
                segments.push(carried(&index.dir, &dir, segment, number, index.offset)?);
            }
        }
        segments.extend(draft.segment.take());
        let name = draft
            .target
            .file_name()
            .map_or_else(|| "index".into(), |n| n.to_string_lossy().into_owned());
        let manifest = Manifest {
            name,
            params: self.params.clone(),
            records: u64::from(offset) + records_read,
            bands: std::mem::take(&mut draft.bands),
            roots: roots_file,
            segments,
            fingerprint: String::new(),
        }
        .seal();
        let bytes = drainpipe_actors::codec::encode(&manifest, super::INDEX_VERSION)?;
        let mut file = std::fs::File::create(dir.join(MANIFEST_FILE))?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        let bytes_total: u64 =
            manifest.files().map(|(_, bytes)| bytes).sum::<u64>() + bytes.len() as u64;
        let target = draft.target.display().to_string();
        draft.commit()?;
        Ok(Some(json!({
            "index": manifest.name,
            "dir": target,
            "records": manifest.records,
            "bytes": bytes_total,
            "fingerprint": manifest.fingerprint,
        })))
    }
}

/// `root`'s first indexed root when this run joined its cluster to an
/// earlier one (`relabeled`: sorted by root), else itself.
fn relabeled_root(relabeled: &[(u32, u32)], root: u32) -> u32 {
    relabeled
        .binary_search_by_key(&root, |&(r, _)| r)
        .map_or(root, |at| relabeled[at].1)
}

/// `segment` of the index in `from`, carried into `to` as segment
/// `number` (hard-linked, else copied), its records shifted by `offset`.
fn carried(
    from: &Path,
    to: &Path,
    segment: &Segment,
    number: usize,
    offset: u32,
) -> anyhow::Result<Segment> {
    let mut moved = segment.clone();
    moved.first += u64::from(offset);
    moved.words.name = format!("words-{number:03}.bin");
    moved.ids.name = format!("ids-{number:03}.bin");
    for (old, new) in [(&segment.words, &moved.words), (&segment.ids, &moved.ids)] {
        let (src, dst) = (from.join(&old.name), to.join(&new.name));
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} into the new index", src.display()))?;
        }
    }
    Ok(moved)
}

impl Draft {
    /// A temporary folder beside `target`, which must not exist; removes
    /// the temporaries a killed run left for the same target.
    fn start(target: &Path) -> Result<Draft, IndexError> {
        if target.exists() {
            return Err(IndexError::Refused(format!(
                "--save-index {}: the folder exists (an index is written as a new folder; remove it or name another)",
                target.display()
            )));
        }
        let name = target
            .file_name()
            .ok_or_else(|| {
                IndexError::Refused(format!(
                    "--save-index {}: not a folder name",
                    target.display()
                ))
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io = |e: std::io::Error| IndexError::Read {
            path: parent.clone(),
            source: e,
        };
        std::fs::create_dir_all(&parent).map_err(io)?;
        let lock = take_target(target, &parent, &name)?;
        remove_killed_drafts(&parent, &name);
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempdir_in(&parent)
            .map_err(io)?;
        Ok(Draft {
            target: target.to_path_buf(),
            temp,
            bands: Vec::new(),
            segment: None,
            _lock: lock,
        })
    }

    /// Renames the complete folder to its name.
    fn commit(self) -> anyhow::Result<()> {
        let temp = self.temp.keep();
        std::fs::rename(&temp, &self.target)
            .with_context(|| format!("renaming the index {} into place", self.target.display()))?;
        if let Some(parent) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The rename is durable once the folder holding it is synced.
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

/// Locks `target` (`.NAME.index-lock` in `parent`, the kernel's `flock`,
/// gone with the process however it ends) before any draft of it is made
/// or removed: a second run saving the same index while the first writes
/// it is refused (exit 2) naming the holder, where it would have removed
/// the first's draft as a killed run's. Checks again, under the lock,
/// that the target does not exist (a run that held it may have committed).
fn take_target(
    target: &Path,
    parent: &Path,
    name: &str,
) -> Result<drainpipe_actors::FolderLock, IndexError> {
    use drainpipe_actors::{FolderLock, LockError};
    let path = parent.join(format!(".{name}.index-lock"));
    let command = format!("--save-index {}", target.display());
    let lock = FolderLock::take(&path, &command).map_err(|e| match e {
        LockError::Held { holder, .. } => IndexError::Refused(format!(
            "--save-index {}: another run is writing this index ({holder}): wait for it to end, or name another folder",
            target.display()
        )),
        LockError::Io(e) => IndexError::Read {
            path: e.path,
            source: e.cause,
        },
    })?;
    if target.exists() {
        return Err(IndexError::Refused(format!(
            "--save-index {}: the folder exists (an index is written as a new folder; remove it or name another)",
            target.display()
        )));
    }
    Ok(lock)
}

/// Removes `.NAME.XXXXXX.tmp` folders in `parent`: drafts of an index a
/// killed run was writing (under the target's lock: no live run's).
fn remove_killed_drafts(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let shape = file.len() == prefix.len() + 6 + 4
            && file.starts_with(&prefix)
            && file.ends_with(".tmp");
        if shape && entry.path().is_dir() {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => log::warn!("removed {file}, an index a killed run was writing"),
                Err(e) => {
                    log::warn!("could not remove {file}, an index a killed run was writing: {e}")
                }
            }
        }
    }
}
