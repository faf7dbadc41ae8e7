//! A run's part in its indexes ([`IndexRun`]): opens the indexes it runs
//! against before any work (parameters checked, band runs and roots
//! loaded), hooks into passes 1 and 2 ([`super::hooks`]), makes the
//! clusters joined with the indexed ones, and writes the index it saves
//! as one set once the run's outputs are committed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;

use crate::jobs::dedup::chain::{BandsHook, RecordHook};
use crate::jobs::dedup::clusters::{Clusters, Prefers};
use crate::jobs::dedup::params::{Banding, DedupParams};
use crate::jobs::dedup::shingle::shingle_set_of_words;

use super::files::{self, Block, Part, SegmentWriter};
use super::hooks::{JoinedBands, Joiner};
use super::manifest::{FileRef, Segment, MANIFEST_FILE};
use super::{IndexError, IndexOptions, IndexParams, Manifest};

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
    bands: Vec<FileRef>,
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
    /// Each indexed record's cluster root, in the joined numbering.
    roots: Vec<u32>,
    draft: Option<Draft>,
    bands: Arc<JoinedBands>,
    joiner: Option<Arc<Joiner>>,
    /// Indexed roots joined to an earlier root through this run.
    relabeled: Vec<(u32, u32)>,
    cross_pairs: u64,
    cross_checked: u64,
}

/// Opens `dir` as an index for a run with `here`: its manifest, checked
/// against `here` (exit 2 naming each difference).
pub fn open_checked(dir: &Path, here: &IndexParams) -> Result<Manifest, IndexError> {
    let manifest = Manifest::read(dir)?;
    manifest.check(dir, here)?;
    Ok(manifest)
}

impl IndexRun {
    /// The run's indexes (`None` without `--against` or `--save-index`):
    /// each index it is against opened and checked, its band runs and
    /// roots loaded; the folder to save into refused if it exists.
    pub fn open(
        options: &IndexOptions,
        params: &DedupParams,
        banding: Banding,
    ) -> Result<Option<IndexRun>, IndexError> {
        if options.is_empty() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let here = IndexParams::of(params, banding);
        let draft = options.save.as_deref().map(Draft::start).transpose()?;
        let (mut opened, mut offset) = (Vec::new(), 0u64);
        for dir in &options.against {
            let manifest = open_checked(dir, &here)?;
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
        let mut prior = vec![Vec::new(); banding.bands];
        let mut roots = Vec::with_capacity(offset as usize);
        for index in &opened {
            index.load(&mut prior, &mut roots)?;
        }
        let offset = offset as u32;
        in_record_order(&mut prior, offset).map_err(|why| {
            let dir = options
                .against
                .first()
                .map_or(Path::new(""), |d| d.as_path());
            IndexError::damaged(dir, "band-*.bin", why)
        })?;
        log::info!(
            "dedup index: {} indexed records' bands and roots loaded in {:.2} s",
            roots.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(Some(IndexRun {
            params: here,
            opened,
            offset,
            roots,
            bands: Arc::new(JoinedBands::new(prior, offset, draft.is_some())),
            draft,
            joiner: None,
            relabeled: Vec::new(),
            cross_pairs: 0,
            cross_checked: 0,
        }))
    }

    /// Pass 1's hook.
    pub fn bands_hook(&self) -> Arc<dyn BandsHook> {
        Arc::clone(&self.bands) as Arc<dyn BandsHook>
    }

    /// After pass 1: writes the saved index's band runs, reads the sets
    /// of the indexed records that share a bucket with the run's, and
    /// makes pass 2's hook.
    pub fn after_signatures(&mut self) -> anyhow::Result<Arc<dyn RecordHook>> {
        let started = std::time::Instant::now();
        let out = self
            .bands
            .take()
            .context("pass 1 ended without the index's bands")?;
        if let Some(draft) = &mut self.draft {
            for (i, band) in out.bands.iter().enumerate() {
                let file = files::write_band(draft.temp.path(), i, band).with_context(|| {
                    format!("writing band {i} of the index {}", draft.target.display())
                })?;
                draft.bands.push(file);
            }
        }
        drop(out.bands);
        let mut needed: Vec<u32> = out.cross.iter().map(|&(a, _)| a).collect();
        needed.sort_unstable();
        needed.dedup();
        let mut sets = HashMap::with_capacity(needed.len());
        let ngram = self.params.ngram as usize;
        self.read_part(Part::Words, &needed, &mut |record, block, at| {
            if let Block::Words(words) = block {
                sets.insert(record, shingle_set_of_words(words.get(at), ngram));
            }
        })?;
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
            "dedup index: {} pairs across, the sets of {} indexed records read (and the bands of an index to save written) in {:.2} s",
            out.cross.len(),
            sets.len(),
            started.elapsed().as_secs_f64()
        );
        self.cross_pairs = out.cross.len() as u64;
        let joiner = Arc::new(Joiner::new(self.params.threshold, out.cross, sets, writer));
        self.joiner = Some(Arc::clone(&joiner));
        Ok(joiner)
    }

    /// After pass 2: the clusters of this run joined with the indexed
    /// ones, each record removed as a duplicate of an indexed record
    /// named with that record's id and index. `prefers`: the `--keep`
    /// order over this run's records, for the clusters without an indexed
    /// record ([`Clusters::with_index_keeping`]).
    pub fn clusters(
        &mut self,
        pairs: &[(u32, u32, f64)],
        records_read: u64,
        prefers: Option<&Prefers<'_>>,
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
        let cross: Vec<(u32, u32, f64)> = state
            .verified
            .iter()
            .map(|&(a, b, j)| (self.roots[a as usize], b, j))
            .collect();
        let (mut clusters, relabeled) =
            Clusters::with_index_keeping(pairs, &cross, self.offset, prefers);
        self.relabeled = relabeled;
        let mut wanted: Vec<u32> = clusters.indexed.iter().map(|x| x.root).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut ids: HashMap<u32, Box<str>> = HashMap::with_capacity(wanted.len());
        self.read_part(Part::Ids, &wanted, &mut |record, block, at| {
            if let Block::Ids(list) = block {
                ids.insert(record, list[at].take().unwrap_or_else(|| "null".into()));
            }
        })?;
        for x in &mut clusters.indexed {
            x.id = ids
                .get(&x.root)
                .cloned()
                .context("an indexed record without its id")?;
            x.index = self.index_of(x.root).manifest.name.clone().into();
        }
        Ok(clusters)
    }

    /// The index that holds joined record `record`.
    fn index_of(&self, record: u32) -> &Opened {
        let i = self.opened.partition_point(|o| o.offset <= record);
        &self.opened[i.saturating_sub(1)]
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
            "removed_as_indexed": clusters.indexed.len(),
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
        let relabeled: HashMap<u32, u32> = self.relabeled.iter().copied().collect();
        let mut roots = std::mem::take(&mut self.roots);
        for root in &mut roots {
            if let Some(&to) = relabeled.get(root) {
                *root = to;
            }
        }
        let offset = self.offset;
        roots.extend((0..records_read as u32).map(|r| r + offset));
        for &(r, kept, _) in &clusters.removed {
            roots[(offset + r) as usize] = offset + kept;
        }
        for x in &clusters.indexed {
            roots[(offset + x.record) as usize] = x.root;
        }
        let dir = draft.temp.path().to_path_buf();
        let roots_file = files::write_roots(&dir, &roots)?;
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
        let bytes_total: u64 = manifest.files().map(|f| f.bytes).sum::<u64>() + bytes.len() as u64;
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

/// Puts each band's entries in record order, as pass 1's lists are (each
/// record has one entry in every band, or none): by each record's rank
/// among the records of the first band, in one pass per band, where a
/// sort took most of the time of opening an index of 5M records. Refuses
/// bands that do not hold the same records once each.
fn in_record_order(bands: &mut [Vec<u64>], records: u32) -> Result<(), String> {
    const ABSENT: u32 = u32::MAX;
    let Some(first) = bands.first() else {
        return Ok(());
    };
    let mut rank = vec![ABSENT; records as usize];
    let mut present: Vec<u32> = first.iter().map(|&e| e as u32).collect();
    present.sort_unstable();
    for (i, &r) in present.iter().enumerate() {
        match rank.get_mut(r as usize) {
            Some(slot) if *slot == ABSENT => *slot = i as u32,
            _ => return Err(format!("record {r} twice in a band, or past the records")),
        }
    }
    for band in bands.iter_mut() {
        if band.len() != present.len() {
            return Err(format!(
                "bands of {} and {} entries",
                band.len(),
                present.len()
            ));
        }
        let mut ordered = vec![u64::MAX; band.len()];
        for &e in band.iter() {
            let at = rank.get(e as u32 as usize).copied().unwrap_or(ABSENT);
            match ordered.get_mut(at as usize) {
                Some(slot) if *slot == u64::MAX => *slot = e,
                _ => return Err(format!("record {} not once in every band", e as u32)),
            }
        }
        *band = ordered;
    }
    Ok(())
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

impl Opened {
    /// Appends the index's band entries (records shifted by its offset)
    /// and roots (likewise) to the run's.
    fn load(&self, bands: &mut [Vec<u64>], roots: &mut Vec<u32>) -> Result<(), IndexError> {
        let (dir, manifest) = (&self.dir, &self.manifest);
        if manifest.bands.len() != bands.len() {
            let why = format!(
                "{} band runs for {} bands",
                manifest.bands.len(),
                bands.len()
            );
            return Err(IndexError::damaged(dir, MANIFEST_FILE, why));
        }
        for (band, file) in bands.iter_mut().zip(&manifest.bands) {
            files::read_band(dir, file, self.offset, band)?;
        }
        let own = files::read_roots(dir, &manifest.roots, manifest.records)?;
        roots.extend(own.into_iter().map(|r| r + self.offset));
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_sorted_by_key_come_back_in_record_order_or_are_refused() {
        let e = |key: u64, record: u64| key << 32 | record;
        let mut bands = vec![
            vec![e(1, 4), e(2, 0), e(9, 2)],
            vec![e(0, 2), e(5, 4), e(7, 0)],
        ];
        in_record_order(&mut bands, 5).unwrap();
        assert_eq!(
            bands,
            [
                vec![e(2, 0), e(9, 2), e(1, 4)],
                vec![e(7, 0), e(0, 2), e(5, 4)]
            ]
        );
        let mut unequal = vec![vec![e(1, 4), e(2, 0)], vec![e(0, 2), e(5, 4)]];
        assert!(in_record_order(&mut unequal, 5).is_err());
        let mut twice = vec![vec![e(1, 4), e(2, 0)], vec![e(0, 4), e(5, 4)]];
        assert!(in_record_order(&mut twice, 5).is_err());
        let mut past = vec![vec![e(1, 7)]];
        assert!(in_record_order(&mut past, 5).is_err());
    }
}
