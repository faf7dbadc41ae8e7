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
//! joined to an earlier one looked up in a sorted list. The pairs across,
//! candidate and verified, go to disk past their shares
//! ([`crate::jobs::dedup::spill::across`], [`PairsSpill::across`]) and
//! reach the clusters as a stream by indexed record. The records removed
//! as indexed records' duplicates are named with their roots' ids by a
//! sort by root joined with the ids read in order, then sorted back by
//! record, held through pass 3 within their share or in one run on disk
//! ([`crate::jobs::dedup::spill::indexed`]).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::json;

use crate::jobs::dedup::chain::{BandsHook, ClusteredIds, RecordHook};
use crate::jobs::dedup::clusters::{Clusters, StopCheck};
use crate::jobs::dedup::keep::KeepPolicy;
use crate::jobs::dedup::params::{Banding, DedupParams};
use crate::jobs::dedup::shingle::shingle_set_of_words;

use super::files::{self, Block, IdsReader, Part, RootsReader, RootsWriter, SegmentWriter};
use super::hooks::{BandsOut, IndexBands, IndexedSets, JoinedBands, Joiner};
use super::manifest::{Segment, MANIFEST_FILE};
use super::progress::{IndexProgress, ProgressFile, VerifiedAcross};
use super::{IndexError, IndexOptions, IndexParams, Manifest};
use crate::jobs::dedup::resume;
use crate::jobs::dedup::spill::across::CrossPairs;
use crate::jobs::dedup::spill::components::RemovedRecord;
use crate::jobs::dedup::spill::indexed::NameError;
use crate::jobs::dedup::spill::merge::EntrySource;
use crate::jobs::dedup::spill::record_sets::{RecordSet, SetState, SetWriter};
use crate::jobs::dedup::spill::runs::Entry;
use crate::jobs::dedup::spill::runs::{RunError, RunInfo};
use crate::jobs::dedup::spill::sorter::Sorter;
use crate::jobs::dedup::spill::verified::PairsSpill;
use crate::jobs::dedup::spill::verified::VerifiedPairs;
use drainpipe_actors::TempSpace;

/// The set of the records in pairs across, as its runs are named.
const ACROSS: &str = "across";

/// An index the run is against, numbered from `offset` among the run's
/// indexed records.
#[derive(Debug)]
struct Opened {
    dir: PathBuf,
    manifest: Manifest,
    offset: u32,
}

/// The index being saved, in its temporary folder (`.NAME.XXXXXX.tmp`
/// beside the target): removed when the run ends, unless it leaves state
/// to resume from ([`Draft::keep`]) or the draft was renamed into place.
#[derive(Debug)]
struct Draft {
    target: PathBuf,
    /// The draft folder; `None` once it is renamed into place.
    folder: Option<PathBuf>,
    /// The run leaves state to resume from: the draft stays for it.
    keep: bool,
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
    /// The candidate pairs across, when pass 1 wrote them to disk:
    /// removed once pass 2 has read them.
    cross_file: Option<CrossPairs>,
    /// Bytes the candidate pairs across and the verified ones went to
    /// disk with (0: held in memory).
    across_spilled: (u64, u64),
    /// The verified pairs across' share of the budget: what their sort
    /// by indexed record holds, when they went to disk.
    sort_share: u64,
    /// The run's temporary space: the pairs across go when the run
    /// completes; when it does not, pass 2's part of them goes (pass 2 runs
    /// again from its start) and the rest stays for `--resume`.
    temp: Arc<TempSpace>,
    /// Where the run's part so far is kept for `--resume`, and what an
    /// interrupted run left there ([`super::progress`]).
    progress: Option<ProgressFile>,
    resumed: Option<IndexProgress>,
    /// Pass 2's verified pairs across, once it completed, until the
    /// clusters take them; on disk, their runs until the run completes.
    verified: Option<VerifiedPairs>,
    verified_disk: Option<VerifiedPairs>,
    /// Records pass 2 read for the hook, once it completed.
    hooked: Option<u64>,
    /// Bytes the sort of the indexed records pass 2 needs wrote.
    wanted_spilled: u64,
    /// Bytes of the runs the indexed records' sets went to, and the most
    /// they held in memory ([`IndexedSets::peak_bytes`]).
    sets_spilled: (u64, u64),
    /// Bytes on disk of the set of the records in pairs across, when this
    /// process made it (0 when pass 2 was loaded).
    reads_spilled: u64,
}

/// What an index run keeps for `--resume`, and where: the state file, what
/// an interrupted run left in it, and the run's temporary space, which
/// holds the pairs across it names.
#[derive(Debug)]
pub struct Resumable {
    /// The state file (`None`: the run takes no checkpoints).
    pub file: Option<ProgressFile>,
    /// What the interrupted run left (`None`: none, or not resuming).
    pub loaded: Option<IndexProgress>,
    /// The run's temporary space.
    pub temp: Arc<TempSpace>,
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
    /// if it exists. `resumable`: where its state is kept, and what an
    /// interrupted run left (its draft taken up again).
    pub fn open(
        options: &IndexOptions,
        params: &DedupParams,
        banding: Banding,
        resumable: Resumable,
    ) -> Result<Option<IndexRun>, IndexError> {
        if options.is_empty() {
            return Ok(None);
        }
        let here = IndexParams::of(params, banding);
        let draft = Draft::for_run(options.save.as_deref(), resumable.loaded.as_ref())?;
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
        let save_to = draft.as_ref().map(Draft::path);
        let progress = resumable.file;
        let bands = JoinedBands::new(indexes, offset, save_to, progress.clone());
        let mut run = IndexRun {
            params: here,
            opened,
            offset,
            bands: Arc::new(bands),
            draft,
            joiner: None,
            relabeled: Vec::new(),
            cross_pairs: 0,
            cross_checked: 0,
            cross_file: None,
            across_spilled: (0, 0),
            sort_share: 0,
            temp: resumable.temp,
            progress,
            resumed: None,
            verified: None,
            verified_disk: None,
            hooked: None,
            wanted_spilled: 0,
            reads_spilled: 0,
            sets_spilled: (0, 0),
        };
        if let Some(loaded) = resumable.loaded {
            run.take_up(loaded);
        }
        Ok(Some(run))
    }

    /// Takes up what an interrupted run left: pass 2's part, when it
    /// completed, is this run's; pass 1's waits for pass 1 to be loaded
    /// rather than run again ([`IndexRun::after_signatures`]).
    fn take_up(&mut self, loaded: IndexProgress) {
        self.temp.holds(loaded.cross.bytes_spilled());
        let Some(verified) = loaded.verified else {
            self.resumed = Some(loaded);
            return;
        };
        if let Some(draft) = &mut self.draft {
            draft.bands = loaded.bands;
            draft.segment = verified.segment;
        }
        self.cross_pairs = verified.cross_pairs;
        self.cross_checked = verified.checked;
        self.hooked = Some(verified.hooked);
        self.sets_spilled = verified.sets_spilled;
        self.wanted_spilled = verified.wanted_spilled;
        self.across_spilled = (loaded.cross.bytes_spilled(), verified.pairs.bytes_on_disk());
        self.temp.holds(self.across_spilled.1);
        self.cross_file = matches!(loaded.cross, CrossPairs::Disk(_)).then_some(loaded.cross);
        self.verified_disk =
            matches!(verified.pairs, VerifiedPairs::Disk(_)).then(|| verified.pairs.clone());
        self.verified = Some(verified.pairs);
    }

    /// Records pass 2 read for the hook, when an interrupted run completed
    /// pass 2: then no hook is made, pass 2 is loaded.
    pub fn verified_before(&self) -> Option<u64> {
        self.hooked
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
    /// `temp`: [`IndexedSets::read`]), and makes pass 2's hook, which
    /// keeps the verified pairs across within `verified_share`
    /// ([`PairsSpill::across`]); the set of the records in pairs across
    /// within `set_share` ([`SetWriter`]). The candidate pairs across are
    /// read front to back, from memory or from their run on disk
    /// ([`CrossPairs`]), never held here.
    pub fn after_signatures(
        &mut self,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        (verified_share, set_share): (Option<u64>, Option<u64>),
    ) -> anyhow::Result<Arc<dyn RecordHook>> {
        let started = std::time::Instant::now();
        // Pass 1 loaded: what its hook found when it ran.
        let resumed = self.resumed.take().map(|r| BandsOut {
            cross: r.cross,
            bands: r.bands,
        });
        let out = (self.bands.take())
            .or(resumed)
            .context("pass 1 ended without the index's bands")?;
        if let Some(draft) = &mut self.draft {
            draft.bands = out.bands;
        }
        // In the order pass 2 reads them in, that of the spilled sets'
        // runs: by the record, then the indexed record.
        let cross = out.cross;
        let reads = SetWriter::new(ACROSS, Some(Arc::clone(temp)), set_share)
            .resumed(SetState::default())
            .map_err(reading_pairs)?;
        let (sets, reads, indexed) = self.indexed_sets(&cross, (share, temp), reads)?;
        self.reads_spilled = reads.bytes_on_disk();
        let writer = self.segment_writer()?;
        log::info!(
            "dedup index: {} pairs across ({} bytes on disk), the sets of {indexed} indexed \
             records read in {:.2} s ({} in memory, {} bytes written to sorted runs)",
            cross.len(),
            cross.bytes_spilled(),
            started.elapsed().as_secs_f64(),
            sets.memory.len(),
            sets.spilled_bytes(),
        );
        self.cross_pairs = cross.len();
        self.across_spilled.0 = cross.bytes_spilled();
        self.sets_spilled = (sets.spilled_bytes(), sets.peak_bytes);
        self.cross_file = matches!(cross, CrossPairs::Disk(_)).then(|| cross.clone());
        let cross = (
            cross.reader(temp).map_err(reading_pairs)?,
            self.cross_pairs,
            reads,
        );
        let verified = PairsSpill::across(Arc::clone(temp), verified_share);
        self.sort_share = verified_share.unwrap_or(u64::MAX);
        let threshold = self.params.threshold;
        let joiner = Arc::new(Joiner::new(threshold, cross, (sets, verified), writer));
        self.joiner = Some(Arc::clone(&joiner));
        Ok(joiner)
    }

    /// The shingle sets of the indexed records in the pairs `cross`,
    /// within `share` bytes, past it in sorted runs in `temp`
    /// ([`IndexedSets::read`]); with the records of this run in a pair
    /// across (written into `reads` in record order, as `cross` yields
    /// them), and how many indexed records were read. The indexed records
    /// are found by an external sort within the same share (pass 2's own
    /// shares are not in use yet), sorted and each once: never a list of
    /// them, nor a bit per indexed record, held whole.
    fn indexed_sets(
        &mut self,
        cross: &CrossPairs,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        mut reads: SetWriter,
    ) -> anyhow::Result<(IndexedSets, RecordSet, u64)> {
        let before = temp.bytes_spilled();
        let mut wanted = Sorter::new(temp, "indexed-wanted", share.unwrap_or(u64::MAX));
        cross
            .each(temp, &mut |(indexed, record)| {
                reads.insert(record.into())?;
                let key = indexed.into();
                wanted.push(Entry {
                    key,
                    record: 0,
                    print: 0,
                })
            })
            .map_err(reading_pairs)?;
        let reads = reads.finish().map_err(reading_pairs)?;
        let mut wanted = wanted.finish().map_err(reading_pairs)?;
        self.wanted_spilled = temp.bytes_spilled() - before - reads.bytes_on_disk();
        let (failed, mut indexed) = (Cell::new(None), 0u64);
        let ngram = self.params.ngram as usize;
        let mut stream = std::iter::from_fn(|| match wanted.next_entry() {
            Ok(entry) => entry.map(|e| {
                indexed += 1;
                e.key as u32
            }),
            Err(e) => {
                failed.set(Some(e));
                None
            }
        });
        let sets = IndexedSets::read(&cross.pending(temp), (share, temp), |keep| {
            self.read_part(Part::Words, &mut stream, &mut |record, block, at| {
                if let Block::Words(words) = block {
                    keep(record, shingle_set_of_words(words.get(at), ngram));
                }
            })
        });
        if let Some(e) = failed.take() {
            return Err(reading_pairs(e));
        }
        Ok((sets?, reads, indexed))
    }

    /// The writer of this run's words and ids into the draft of the index
    /// being saved, as the segment after the indexes' (`None`: none is).
    fn segment_writer(&self) -> anyhow::Result<Option<SegmentWriter>> {
        let Some(draft) = &self.draft else {
            return Ok(None);
        };
        let number = self.opened.iter().map(|o| o.manifest.segments.len()).sum();
        let writer = SegmentWriter::create(&draft.path(), number, self.offset.into())
            .with_context(|| format!("writing the index {}", draft.target.display()))?;
        Ok(Some(writer))
    }

    /// After pass 2: the clusters of this run's verified `pairs` joined
    /// with the indexed ones, each record removed as a duplicate of an
    /// indexed record named with that record's id and index. `keep`:
    /// under a `--keep` policy other than `first`, the clustered records'
    /// ids with their keys and the policy ranking this run's records in
    /// the clusters without an indexed record. Within `share` bytes
    /// (`None`: no budget), past it with sorted runs in `temp`
    /// ([`Clusters::with_index_stream`]), the verified pairs across
    /// streamed to it by indexed record, each with its cluster's root.
    pub fn clusters(
        &mut self,
        pairs: &VerifiedPairs,
        (share, temp): (Option<u64>, &Arc<TempSpace>),
        (keep, stop): (Option<(&ClusteredIds, &KeepPolicy)>, &StopCheck<'_>),
    ) -> anyhow::Result<Clusters> {
        let cross = (self.verified.take()).context("pass 2 ran without the index's hook")?;
        // Tests act here, the verified pairs across on disk (feature
        // `failpoints`): `dedup::across_hold=return(FILE)`.
        crate::jobs::dedup::crash::hold("dedup::across_hold", &|| stop.asked());
        let failed = Cell::new(None);
        let count = cross.len();
        let made = match cross {
            VerifiedPairs::Memory(mut across) => {
                // Held within their share: relabeled in place.
                let made = self.roots_in_place(&mut across, &failed).and_then(|()| {
                    Clusters::with_index_stream(
                        pairs.reader(temp),
                        pairs.len(),
                        (across.into_iter().map(Ok), count, self.offset),
                        (share, temp),
                        (keep, stop),
                    )
                });
                made
            }
            disk => {
                let made = self.by_root(&disk, temp, &failed).and_then(|across| {
                    Clusters::with_index_stream(
                        pairs.reader(temp),
                        pairs.len(),
                        (across, count, self.offset),
                        (share, temp),
                        (keep, stop),
                    )
                });
                // Removed once the run completes: a resumed run reads
                // them again.
                self.verified_disk = Some(disk);
                made
            }
        };
        if let Some(e) = failed.take() {
            return Err(e.into());
        }
        let (mut clusters, relabeled) = made.map_err(|e| match e {
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

    /// Once pass 2 has completed (run, or loaded with what an interrupted
    /// run left): the verification of the pairs across finished
    /// (`IndexRun::verified_across`) and kept for `--resume` with the
    /// rest of the run's part ([`super::progress`]). `hooked`: the records
    /// pass 2 read for the hook.
    pub fn after_verify(&mut self, records_read: u64, hooked: u64) -> anyhow::Result<()> {
        if self.verified.is_some() {
            return Ok(());
        }
        let verified = self.verified_across(records_read)?;
        self.hooked = Some(hooked);
        let Some(file) = &self.progress else {
            self.verified = Some(verified);
            return Ok(());
        };
        let draft = self.draft.as_ref();
        let mut progress = IndexProgress {
            draft: draft.map(Draft::path),
            cross: self.cross_file.clone().unwrap_or_default(),
            bands: draft.map(|d| d.bands.clone()).unwrap_or_default(),
            verified: Some(VerifiedAcross {
                pairs: verified,
                segment: draft.and_then(|d| d.segment.clone()),
                cross_pairs: self.cross_pairs,
                checked: self.cross_checked,
                hooked,
                sets_spilled: self.sets_spilled,
                wanted_spilled: self.wanted_spilled,
            }),
        };
        let written = file.write(&progress);
        let verified = progress.verified.take().expect("set above").pairs;
        self.verified_disk = matches!(verified, VerifiedPairs::Disk(_)).then(|| verified.clone());
        self.verified = Some(verified);
        written.map_err(|e| anyhow::Error::new(e.into_io()))
    }

    /// Pass 2's verified pairs across, once it has ended: every pair
    /// across checked, the index's words and ids written, the indexed
    /// sets' runs removed from disk (the candidate pairs across stay until
    /// the run completes: a resumed run that runs pass 2 again reads them).
    fn verified_across(&mut self, records_read: u64) -> anyhow::Result<VerifiedPairs> {
        let joiner = self
            .joiner
            .take()
            .context("pass 2 ran without the index's hook")?;
        let mut state = joiner.take();
        // Read by pass 2 only, which has ended.
        let removed = joiner.records().remove_runs();
        drop(joiner);
        removed
            .map_err(RunError::into_io)
            .context("removing the records in pairs across from disk")?;
        state.fill_to(records_read);
        if let Some(e) = state.error.take() {
            return Err(e).context("writing the index's words and ids");
        }
        if let Some(e) = state.read_error.take() {
            return Err(e.into_io())
                .context("reading the pairs across or the indexed records' sets back from disk");
        }
        let written = match state.spill_error.take() {
            Some(e) => Err(e),
            None => state.verified.finish(),
        };
        let verified = match written {
            Ok(verified) => verified,
            Err(e) => {
                if let Err(e) = state.verified.remove_all() {
                    log::warn!("dedup pass 2: removing the verified pairs across: {e}");
                }
                return Err(e.into_io()).context("dedup pass 2: writing the verified pairs across");
            }
        };
        // Every pair across was verified: the sets' runs and the pairs
        // across are of no more use.
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
        self.across_spilled.1 = verified.bytes_on_disk();
        Ok(verified)
    }

    /// The verified pairs across `(indexed record, record, similarity)`
    /// on disk, by indexed record, then record, each indexed record
    /// (joined numbering) replaced by its cluster's root, read front to
    /// back from each index's roots as the pairs pass ([`ToRoots`]):
    /// sorted with runs in `temp` within their share ([`Sorter`]),
    /// nothing else held. A roots file that cannot be read ends the
    /// stream, its error in `failed`.
    fn by_root<'a>(
        &'a self,
        cross: &'a VerifiedPairs,
        temp: &Arc<TempSpace>,
        failed: &'a Cell<Option<IndexError>>,
    ) -> Result<ToRoots<'a>, RunError> {
        let mut sorter = Sorter::new(temp, "across-by-indexed", self.sort_share);
        for pair in cross.reader(temp) {
            let (indexed, record, j) = pair?;
            sorter.push(Entry {
                key: indexed.into(),
                record,
                print: j.to_bits(),
            })?;
        }
        let mut stream = sorter.finish()?;
        let sorted = std::iter::from_fn(move || {
            let entry = stream.next_entry().transpose()?;
            Some(entry.map(|e| (e.key as u32, e.record, f64::from_bits(e.print))))
        });
        Ok(ToRoots {
            opened: &self.opened,
            pairs: Box::new(sorted),
            reading: None,
            last: None,
            failed,
        })
    }

    /// [`IndexRun::by_root`] of the verified pairs across held in
    /// memory: sorted and relabeled in place, as they are.
    fn roots_in_place(
        &self,
        pairs: &mut [RemovedRecord],
        failed: &Cell<Option<IndexError>>,
    ) -> Result<(), RunError> {
        pairs.sort_unstable_by_key(|&(a, b, _)| (a, b));
        let mut roots = ToRoots {
            opened: &self.opened,
            pairs: Box::new(std::iter::empty()),
            reading: None,
            last: None,
            failed,
        };
        for pair in pairs {
            pair.0 = roots.root(pair.0)?;
        }
        Ok(())
    }

    /// The number of the index that holds joined record `record`.
    fn index_number(&self, record: u32) -> usize {
        let i = self.opened.partition_point(|o| o.offset <= record);
        i.saturating_sub(1)
    }

    /// Reads `part` of the `wanted` records (joined numbering, sorted,
    /// each once, as a stream), index by index, block by block.
    fn read_part(
        &self,
        part: Part,
        wanted: &mut dyn Iterator<Item = u32>,
        visit: &mut dyn FnMut(u32, &mut Block, usize),
    ) -> Result<(), IndexError> {
        let mut wanted = wanted.peekable();
        for index in &self.opened {
            let (offset, end) = (
                index.offset,
                u64::from(index.offset) + index.manifest.records,
            );
            // This index's records, in its own numbering.
            let mut local = std::iter::from_fn(|| loop {
                let r = wanted.next_if(|&r| u64::from(r) < end)?;
                if r >= offset {
                    return Some(r - offset);
                }
            })
            .peekable();
            for segment in &index.manifest.segments {
                files::read_blocks(
                    &index.dir,
                    segment,
                    part,
                    &mut local,
                    &mut |r, block, at| visit(r + offset, block, at),
                )?;
            }
        }
        Ok(())
    }

    /// Writes the saved index (if any) as one set: the run's `clusters`
    /// over its `records_read` records. Returns the summary's account of
    /// the indexes.
    pub fn finish(
        mut self,
        clusters: &Clusters,
        records_read: u64,
    ) -> anyhow::Result<serde_json::Value> {
        self.remove_pairs_across();
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
            "pairs_across_spilled_bytes": self.across_spilled.0,
            "verified_pairs_across_spilled_bytes": self.across_spilled.1,
            "indexed_records_sorted_spilled_bytes": self.wanted_spilled,
            "indexed_sets_spilled_bytes": self.sets_spilled.0,
            "indexed_sets_peak_bytes": self.sets_spilled.1,
            "across_records_spilled_bytes": self.reads_spilled,
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
        let dir = draft.path();
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

impl IndexRun {
    /// Removes the pairs across from disk, once the outputs are committed:
    /// nothing resumes from them any more (a warning when one cannot be:
    /// it goes with the temporary folder).
    fn remove_pairs_across(&mut self) {
        if let Some(Err(e)) = self.cross_file.take().map(|c| c.remove(&self.temp)) {
            log::warn!("dedup index: the outputs are committed, but removing the candidate pairs across: {e}");
        }
        if let Some(Err(e)) = self.verified_disk.take().map(|v| v.remove(&self.temp)) {
            log::warn!("dedup index: the outputs are committed, but removing the verified pairs across: {e}");
        }
    }
}

impl Drop for IndexRun {
    /// When the run ended before pass 2 completed (a failure or a stop in
    /// it), removes what pass 2 had made of the pairs across and of the
    /// indexed sets on disk: a resumed run runs pass 2 again from its
    /// start. The candidate pairs across and the draft of the index being
    /// saved stay when the run leaves state to resume from (else they go,
    /// with the temporary folder and the draft).
    fn drop(&mut self) {
        if let Some(draft) = &mut self.draft {
            draft.keep = (self.progress.as_ref()).is_some_and(|p| resume::left_in(p.output()));
        }
        let mut removed = Vec::new();
        if let Some(joiner) = self.joiner.take() {
            let mut state = joiner.take();
            removed.push(state.verified.remove_all());
            if let Some(spill) = &mut state.sets.spill {
                removed.push(spill.remove_all());
            }
        }
        for e in removed.into_iter().filter_map(Result::err) {
            log::warn!("dedup index: removing the pairs across from disk: {e} (removed with the temporary folder)");
        }
    }
}

/// An error reading the candidate pairs across (or their sort) back.
fn reading_pairs(e: RunError) -> anyhow::Error {
    anyhow::Error::new(e.into_io()).context("reading the candidate pairs across from disk")
}

/// `root`'s first indexed root when this run joined its cluster to an
/// earlier one (`relabeled`: sorted by root), else itself.
fn relabeled_root(relabeled: &[(u32, u32)], root: u32) -> u32 {
    relabeled
        .binary_search_by_key(&root, |&(r, _)| r)
        .map_or(root, |at| relabeled[at].1)
}

/// Verified pairs across sorted by indexed record (joined numbering),
/// each indexed record replaced by its cluster's root: each index's roots
/// read front to back as the pairs pass, one reader at a time.
struct ToRoots<'a> {
    opened: &'a [Opened],
    pairs: Box<dyn Iterator<Item = Result<RemovedRecord, RunError>> + 'a>,
    /// The index whose roots are read, its reader, and the next record
    /// it gives (joined numbering).
    reading: Option<(usize, RootsReader, u32)>,
    /// The last record looked up, with its root.
    last: Option<(u32, u32)>,
    /// Why a roots file could not be read (the stream then fails).
    failed: &'a Cell<Option<IndexError>>,
}

impl ToRoots<'_> {
    /// The root of indexed record `record`, no smaller than the last one
    /// asked for.
    fn root_of(&mut self, record: u32) -> Result<u32, IndexError> {
        if let Some((r, root)) = self.last.filter(|&(r, _)| r == record) {
            debug_assert_eq!(r, record);
            return Ok(root);
        }
        let number = self.opened.partition_point(|o| o.offset <= record);
        let number = number.saturating_sub(1);
        let index = &self.opened[number];
        if self.reading.as_ref().is_none_or(|(n, ..)| *n != number) {
            let manifest = &index.manifest;
            let reader = RootsReader::open(&index.dir, &manifest.roots, manifest.records)?;
            self.reading = Some((number, reader, index.offset));
        }
        let (_, reader, next) = self.reading.as_mut().expect("opened above");
        while *next <= record {
            let Some(root) = reader.next_root()? else {
                let why = format!("no root for record {}", record - index.offset);
                return Err(IndexError::damaged(
                    &index.dir,
                    &index.manifest.roots.name,
                    why,
                ));
            };
            if *next == record {
                self.last = Some((record, root + index.offset));
            }
            *next += 1;
        }
        self.last
            .filter(|&(r, _)| r == record)
            .map(|(_, root)| root)
            .ok_or_else(|| {
                let why = format!("record {} asked for out of order", record - index.offset);
                IndexError::damaged(&index.dir, &index.manifest.roots.name, why)
            })
    }
}

impl ToRoots<'_> {
    /// [`ToRoots::root_of`], its error kept in `failed` and said as a
    /// failure of the pairs' stream.
    fn root(&mut self, record: u32) -> Result<u32, RunError> {
        self.root_of(record).map_err(|e| {
            let failure = RunError::Failed {
                kind: std::io::ErrorKind::InvalidData,
                message: e.to_string(),
            };
            self.failed.set(Some(e));
            failure
        })
    }
}

impl Iterator for ToRoots<'_> {
    type Item = Result<RemovedRecord, RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (indexed, record, j) = match self.pairs.next()? {
            Ok(pair) => pair,
            Err(e) => return Some(Err(e)),
        };
        Some(self.root(indexed).map(|root| (root, record, j)))
    }
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
    /// The draft of the index saved into `save` (`None`: none is), the
    /// one an interrupted run left when it is `loaded`, else a new one.
    fn for_run(
        save: Option<&Path>,
        loaded: Option<&IndexProgress>,
    ) -> Result<Option<Draft>, IndexError> {
        let drafted = loaded.map(|l| l.draft.as_deref());
        match (save, drafted) {
            (Some(target), None) => Ok(Some(Draft::start(target, None)?)),
            (Some(target), Some(Some(folder))) => Ok(Some(Draft::start(target, Some(folder))?)),
            (None, None | Some(None)) => Ok(None),
            (_, Some(_)) => Err(IndexError::Refused(
                "--resume: the interrupted run saved another index than this one: run it again with --force".into(),
            )),
        }
    }

    /// A temporary folder beside `target`, which must not exist: `resumed`,
    /// the draft an interrupted run left (`--resume`), else a new one;
    /// removes the other temporaries a killed run left for the same target.
    fn start(target: &Path, resumed: Option<&Path>) -> Result<Draft, IndexError> {
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
        let resumed = resumed.map(|d| taken_up(d, &parent, &name)).transpose()?;
        remove_killed_drafts(&parent, &name, resumed.as_deref());
        let folder = match resumed {
            Some(folder) => folder,
            None => tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".tmp")
                .tempdir_in(&parent)
                .map_err(io)?
                .keep(),
        };
        Ok(Draft {
            target: target.to_path_buf(),
            folder: Some(folder),
            keep: false,
            bands: Vec::new(),
            segment: None,
            _lock: lock,
        })
    }

    /// The draft folder.
    fn path(&self) -> PathBuf {
        self.folder.clone().unwrap_or_default()
    }

    /// Renames the complete folder to its name.
    fn commit(mut self) -> anyhow::Result<()> {
        let temp = self.folder.take().unwrap_or_default();
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

impl Drop for Draft {
    /// Removes the draft, unless the run leaves it to be resumed.
    fn drop(&mut self) {
        let Some(folder) = self.folder.take().filter(|_| !self.keep) else {
            return;
        };
        if let Err(e) = std::fs::remove_dir_all(&folder) {
            log::warn!(
                "could not remove {}, the draft of the index {}: {e}",
                folder.display(),
                self.target.display()
            );
        }
    }
}

/// The draft an interrupted run left, named by its state: refused unless
/// it is a draft of this target (`.NAME.XXXXXX.tmp` in `parent`) that is
/// still there.
fn taken_up(folder: &Path, parent: &Path, name: &str) -> Result<PathBuf, IndexError> {
    let file = folder.file_name().map(|f| f.to_string_lossy().into_owned());
    let is_draft = file.as_deref().is_some_and(|f| is_draft_name(f, name));
    let beside = folder.parent().and_then(|p| p.canonicalize().ok()) == parent.canonicalize().ok();
    if !(is_draft && beside && folder.is_dir()) {
        return Err(IndexError::Refused(format!(
            "--resume: {}, the draft of the index the interrupted run was saving, is gone: run it again with --force",
            folder.display()
        )));
    }
    Ok(folder.to_path_buf())
}

/// Whether `file` is shaped as a draft of the index `name`.
fn is_draft_name(file: &str, name: &str) -> bool {
    let prefix = format!(".{name}.");
    file.len() == prefix.len() + 6 + 4 && file.starts_with(&prefix) && file.ends_with(".tmp")
}

/// Removes `.NAME.XXXXXX.tmp` folders in `parent` but `resumed`: drafts of
/// an index a killed run was writing (under the target's lock: no live
/// run's).
fn remove_killed_drafts(parent: &Path, name: &str, resumed: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let resumed = resumed.and_then(Path::file_name);
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = resumed.is_some_and(|r| r == entry.file_name());
        if is_draft_name(&file, name) && !ours && entry.path().is_dir() {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => log::warn!("removed {file}, an index a killed run was writing"),
                Err(e) => {
                    log::warn!("could not remove {file}, an index a killed run was writing: {e}")
                }
            }
        }
    }
}
