//! Repeated record ids: found in pass 1, confirmed and reported before the
//! outputs are written.
//!
//! Ids come out exactly as the input gave them ([`crate::input`]), so two
//! records that share one would be told apart in `clusters.jsonl` by
//! nothing. Pass 1's processors turn each record's id into a 64-bit key
//! ([`id_key`]); the Integrator keeps one key per record ([`IdKeys`], 8
//! bytes, in its checkpoints too) and, when the pass ends, pairs each
//! record with the first one of its key ([`IdKeys::repeats`]). A key is a
//! hash, so before a pair is reported the records themselves are compared:
//! [`confirm`] reads the input once more, up to the last such record, only
//! when there is one, holding the id of the first record of each repeated
//! key only. Under a memory budget the pairs past their share are on disk,
//! and confirming them holds only what fits its share
//! ([`crate::jobs::dedup::spill::repeats`]: sorts and joins, the same
//! count and the same repeats shown); [`crate::jobs::dedup::spill::repeats::report`]
//! chooses between the two and logs what was found.
//!
//! Two ids are the same when their values are: a string's decoded text
//! (`"a"` and `"\u0061"` are one id), a number's JSON text (`1` and `1.0`
//! are two, as they come out).

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;

use drainpipe_actors::{BatchBuilder, RawRecord, RecordSource};
use serde::{Deserialize, Serialize};

use crate::input::{parse_text_record, TextFields};

/// Records read per batch while confirming.
const CONFIRM_BATCH: usize = 4096;

/// The value of the id whose JSON text is `id`, as ids are compared: a
/// string's JSON text with its escapes decoded (and written again as
/// serde_json writes strings), anything else as it is.
pub fn canonical(id: &str) -> Cow<'_, str> {
    if id.starts_with('"') && id.contains('\\') {
        if let Ok(value) = serde_json::from_str::<String>(id) {
            if let Ok(text) = serde_json::to_string(&value) {
                return Cow::Owned(text);
            }
        }
    }
    Cow::Borrowed(id)
}

/// The key of the id whose JSON text is `id`: a 64-bit FNV-1a hash of its
/// [`canonical`] value, mixed (SplitMix64's finalizer); never 0, which
/// marks a record without a key.
pub fn id_key(id: &str) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for &b in canonical(id).as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (h ^ (h >> 31)).max(1)
}

/// The id key of every record pass 1 integrated, by record index (0 for
/// a rejected record), from the record `base` on: the records before it
/// were spilled to disk ([`IdKeys::spill`]) under a memory budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdKeys {
    base: u64,
    keys: Vec<u64>,
}

impl IdKeys {
    /// Keys from the record `base` on.
    pub fn from(base: u64) -> Self {
        IdKeys {
            base,
            keys: Vec::new(),
        }
    }

    /// Notes the key of the record at `index` (records come in input order;
    /// the ones skipped in between were rejected).
    pub fn record(&mut self, index: u64, key: u64) {
        let Some(Ok(at)) = index.checked_sub(self.base).map(usize::try_from) else {
            return;
        };
        if at >= self.keys.len() {
            self.keys.resize(at, 0);
            self.keys.push(key);
        } else {
            self.keys[at] = key;
        }
    }

    /// Makes room for one more key as a doubling would, but never past
    /// `records` keys (under a budget, a doubling would pass it).
    pub fn grow_within(&mut self, records: usize) {
        let keys = &mut self.keys;
        if keys.len() == keys.capacity() {
            let target = (keys.capacity() * 2)
                .max(1024)
                .min(records)
                .max(keys.len() + 1);
            keys.reserve_exact(target - keys.len());
        }
    }

    /// Keys held (records from `base` on, rejected ones included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8
    }

    /// `(key, record)` of every record held, sorted: what a sorted run of
    /// id keys holds.
    pub fn sorted(&self) -> Vec<(u64, u32)> {
        let mut keyed: Vec<(u64, u32)> = self
            .keys
            .iter()
            .enumerate()
            .filter(|&(_, &key)| key != 0)
            .map(|(at, &key)| (key, (self.base + at as u64) as u32))
            .collect();
        keyed.sort_unstable();
        keyed
    }

    /// Forgets the keys held (they were written to disk, [`IdKeys::sorted`])
    /// and goes on from the record `base`, keeping the room reserved.
    pub fn spill(&mut self, base: u64) {
        self.keys.clear();
        self.base = base;
    }

    /// Takes the keys of the records before `end` away, in their own
    /// [`IdKeys`] (to be written to disk), and goes on from `end`.
    pub fn take_front(&mut self, end: u64) -> IdKeys {
        let at = usize::try_from(end.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.keys.len());
        let front = IdKeys {
            base: self.base,
            keys: self.keys[..at].to_vec(),
        };
        self.keys.drain(..at);
        self.base = self.base.max(end);
        front
    }

    /// Gives back the room past `records` keys (a list that held more
    /// before it spilled).
    pub fn shrink_to(&mut self, records: usize) {
        self.keys.shrink_to(records);
    }

    /// `(first, later)`: each record whose key an earlier record has,
    /// with the first record of that key; sorted by the later record.
    pub fn repeats(&self) -> Vec<(u32, u32)> {
        let sorted = self.sorted().into_iter().map(Ok::<_, Infallible>);
        match repeats_in(sorted) {
            Ok(pairs) => pairs,
            Err(never) => match never {},
        }
    }
}

/// [`IdKeys::repeats`] of `(key, record)` pairs sorted by key, then record
/// (from memory, or merged from sorted runs on disk); the first error ends
/// it.
pub fn repeats_in<E>(
    sorted: impl IntoIterator<Item = Result<(u64, u32), E>>,
) -> Result<Vec<(u32, u32)>, E> {
    let mut pairs = Vec::new();
    repeats_into(sorted, |pair| {
        pairs.push(pair);
        Ok(())
    })?;
    pairs.sort_unstable_by_key(|&(first, later)| (later, first));
    Ok(pairs)
}

/// Hands `push` each `(first, later)` pair of [`repeats_in`], in the order
/// of the keys (not sorted by the later record): for a list that does not
/// hold them all ([`crate::jobs::dedup::spill::repeats::RepeatsMaker`]).
pub fn repeats_into<E>(
    sorted: impl IntoIterator<Item = Result<(u64, u32), E>>,
    mut push: impl FnMut((u32, u32)) -> Result<(), E>,
) -> Result<(), E> {
    let mut first: Option<(u64, u32)> = None;
    for item in sorted {
        let (key, record) = item?;
        match first {
            Some((k, r)) if k == key => push((r, record))?,
            _ => first = Some((key, record)),
        }
    }
    Ok(())
}

/// A record whose id an earlier record has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    /// The id, as the later record gave it.
    pub id: String,
    /// `file:line` of the first record with that id.
    pub first: String,
    /// `file:line` of the later one.
    pub again: String,
}

/// What [`confirm`] found.
#[derive(Debug, Default)]
pub struct Repeats {
    /// How many records have an id an earlier record has (each paired
    /// with the first record of that id).
    pub count: u64,
    /// The first [`Repeats::SHOWN`] of them by later record, with where
    /// both records are.
    pub shown: Vec<Repeat>,
}

impl Repeats {
    /// Repeats described (and logged) one by one; `count` has them all.
    pub const SHOWN: usize = 20;

    /// Counts the repeat of the later record at `again` (its id `id`, as
    /// it gave it), whose first record is at `first`; the first
    /// [`Repeats::SHOWN`] are kept with their places.
    pub fn note(&mut self, id: &str, first: &str, again: impl ToString) {
        self.count += 1;
        if self.shown.len() < Repeats::SHOWN {
            self.shown.push(Repeat {
                id: id.to_owned(),
                first: first.to_owned(),
                again: again.to_string(),
            });
        }
    }
}

/// Reads `source` from its start in batches, handing `each` every record
/// read with its index (`None`: one that could not be read), until `more` says no more is needed (it is asked
/// before every batch) or `stop` says to stop.
pub fn each_record(
    source: &mut dyn RecordSource,
    stop: &dyn Fn() -> bool,
    mut more: impl FnMut() -> bool,
    mut each: impl FnMut(u32, Option<&RawRecord<'_>>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut index = 0u64;
    while more() && !stop() {
        let mut batch = BatchBuilder::with_capacity(CONFIRM_BATCH, 1 << 20);
        if !source.fill(&mut batch, CONFIRM_BATCH, 1 << 20)? {
            break;
        }
        for record in batch.finish().records() {
            let at = u32::try_from(index).unwrap_or(u32::MAX);
            index += 1;
            each(at, record.as_ref().ok())?;
        }
    }
    Ok(())
}

/// The `pairs` (from [`IdKeys::repeats`]: `(first, later)`, sorted by the
/// later record) whose records really share their id, read from `source`
/// (the run's input from its start) as far as the last of them, or until
/// `stop` says so. Pairs whose keys only collide are left out. Only the
/// first record of each key is held (its id and place); each later one is
/// compared with it as it comes.
pub fn confirm(
    pairs: &[(u32, u32)],
    source: &mut dyn RecordSource,
    fields: &TextFields,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<Repeats> {
    let mut firsts: HashMap<u32, Option<(String, String)>> =
        pairs.iter().map(|&(first, _)| (first, None)).collect();
    let mut repeats = Repeats::default();
    let next = std::cell::RefCell::new(pairs.iter().peekable());
    let more = || next.borrow_mut().peek().is_some();
    each_record(source, stop, more, |at, raw| {
        let mut next = next.borrow_mut();
        let is_first = firsts.contains_key(&at);
        let later = next.peek().is_some_and(|&&(_, later)| later == at);
        if !is_first && !later {
            return Ok(());
        }
        // A record that cannot be read confirms nothing (the input
        // changed): its pairs are passed all the same.
        let parsed = raw.and_then(|raw| Some((raw, parse_text_record(raw, fields).ok()?)));
        let id = parsed.as_ref().map(|(_, p)| canonical(&p.id).into_owned());
        while let Some(&(first, _)) = next.next_if(|&&(_, later)| later == at) {
            let (Some((raw, parsed)), Some(Some((first_id, first_at)))) =
                (&parsed, firsts.get(&first))
            else {
                continue;
            };
            if Some(first_id) == id.as_ref() {
                repeats.note(&parsed.id, first_at, raw.location);
            }
        }
        if let (true, Some((raw, _)), Some(id)) = (is_first, &parsed, id) {
            firsts.insert(at, Some((id, raw.location.to_string())));
        }
        Ok(())
    })?;
    Ok(repeats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::dedup::spill::repeats::RepeatedIds;
    use drainpipe_actors::TempSpace;
    use std::sync::Arc;

    #[test]
    fn ids_of_the_same_value_have_the_same_key() {
        assert_eq!(id_key(r#""a""#), id_key(r#""\u0061""#));
        assert_eq!(canonical(r#""\u0061\/""#), r#""a/""#);
        assert_ne!(id_key("1"), id_key("1.0"));
        assert_ne!(id_key("1"), id_key(r#""1""#));
        assert_ne!(id_key(r#""a""#), id_key(r#""b""#));
        assert_ne!(id_key(""), 0);
    }

    #[test]
    fn only_repeats_of_the_same_value_are_confirmed_and_counted() {
        use super::super::memory::{MemoryRecord, MemorySource};
        use std::sync::Arc;
        let line = |id: &str| MemoryRecord::jsonl(format!(r#"{{"id":{id},"text":"t"}}"#));
        let records = vec![
            line(r#""a""#),
            line("1"),
            MemoryRecord::rejected("unreadable"),
            line(r#""\u0061""#),
            line("1.0"),
            line(r#""a""#),
        ];
        let mut keys = IdKeys::default();
        for (i, r) in records.iter().enumerate() {
            if let Ok(parsed) = parse_text_record(&r.raw(i as u64), &TextFields::default()) {
                keys.record(i as u64, id_key(&parsed.id));
            }
        }
        let pairs = keys.repeats();
        assert_eq!(pairs, [(0, 3), (0, 5)]);
        // A pair whose keys would only collide (1 and 1.0) is not counted.
        let pairs = [(0, 3), (1, 4), (0, 5)];
        let mut source = MemorySource::new(Arc::new(records));
        let found = confirm(&pairs, &mut source, &TextFields::default(), &|| false).unwrap();
        assert_eq!(found.count, 2);
        assert_eq!(
            found.shown,
            [
                Repeat {
                    id: r#""\u0061""#.into(),
                    first: "memory:1".into(),
                    again: "memory:4".into()
                },
                Repeat {
                    id: r#""a""#.into(),
                    first: "memory:1".into(),
                    again: "memory:6".into()
                },
            ]
        );
    }

    /// `count` records whose ids are drawn from a few, some escaped
    /// (`"\u0061"` is `"a"`), some that only collide by key (`1.0` is
    /// given `1`'s), with unreadable ones among them; and the repeats of
    /// their keys.
    fn many_repeats(count: usize) -> (Vec<super::super::memory::MemoryRecord>, Vec<(u32, u32)>) {
        use super::super::memory::MemoryRecord;
        let ids = [
            r#""a""#,
            r#""\u0061""#,
            "1",
            "1.0",
            r#""b""#,
            r#""c\/d""#,
            r#""c/d""#,
        ];
        let mut keys = IdKeys::default();
        let mut records = Vec::new();
        let mut state = 12_345u64;
        for i in 0..count {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let pick = (state >> 33) as usize;
            if pick.is_multiple_of(41) {
                records.push(MemoryRecord::rejected("unreadable"));
                continue;
            }
            // Every other record a distinct id, repeated by none.
            let id = match pick % 2 {
                0 => format!(r#""r{i}""#),
                _ => ids[pick / 2 % ids.len()].to_owned(),
            };
            let key = if id == "1.0" {
                id_key("1")
            } else {
                id_key(&id)
            };
            keys.record(i as u64, key);
            records.push(MemoryRecord::jsonl(format!(r#"{{"id":{id},"text":"t"}}"#)));
        }
        let pairs = keys.repeats();
        (records, pairs)
    }

    #[test]
    fn repeats_confirmed_on_disk_are_those_confirmed_in_memory() {
        use super::super::memory::MemorySource;
        use crate::jobs::dedup::spill::repeats::{confirm_joined, RepeatsMaker};
        use drainpipe_actors::Heartbeat;
        let (records, pairs) = many_repeats(5_000);
        let records = Arc::new(records);
        let fields = TextFields::default();
        let source = || MemorySource::new(Arc::clone(&records));
        let in_memory = confirm(&pairs, &mut source(), &fields, &|| false).unwrap();
        assert!(in_memory.count > 1_000 && in_memory.count < pairs.len() as u64);
        assert_eq!(in_memory.shown.len(), Repeats::SHOWN);
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        // Made past a share of nothing: one run on disk.
        let heartbeat = Heartbeat::default();
        let mut maker = RepeatsMaker::new(&temp, 0, &heartbeat);
        let mut shuffled = pairs.clone();
        shuffled.sort_unstable();
        for &pair in &shuffled {
            maker.push(pair).unwrap();
        }
        let on_disk = maker.finish().unwrap();
        assert!(matches!(on_disk, RepeatedIds::Disk(_)));
        assert_eq!(on_disk.len(), pairs.len() as u64);
        let in_memory_pairs = RepeatedIds::Memory(pairs.clone());
        // Confirmed with sorts that spill (a share of nothing), and that
        // do not (no bound).
        for (repeated, share) in [(&on_disk, 0), (&on_disk, u64::MAX), (&in_memory_pairs, 0)] {
            let joined =
                confirm_joined(repeated, &mut source(), &fields, &|| false, (&temp, share))
                    .unwrap();
            assert_eq!(joined.count, in_memory.count);
            assert_eq!(joined.shown, in_memory.shown);
        }
        on_disk.remove(&temp).unwrap();
        assert!(temp.bytes_spilled() > 0);
        let left = std::fs::read_dir(temp.dir().unwrap()).unwrap().count();
        assert_eq!(left, 0, "every run removed");
    }

    #[test]
    fn a_run_of_repeats_that_cannot_be_read_is_an_io_error_naming_it() {
        use super::super::memory::MemorySource;
        use crate::jobs::dedup::spill::repeats::RepeatsMaker;
        use drainpipe_actors::Heartbeat;
        let (records, pairs) = many_repeats(3_000);
        let dir = tempfile::tempdir().unwrap();
        let temp = Arc::new(TempSpace::new(dir.path()));
        let heartbeat = Heartbeat::default();
        let mut maker = RepeatsMaker::new(&temp, 0, &heartbeat);
        for &pair in &pairs {
            maker.push(pair).unwrap();
        }
        let on_disk = maker.finish().unwrap();
        let RepeatedIds::Disk(info) = &on_disk else {
            panic!("on disk")
        };
        std::fs::remove_file(temp.path(&info.name).unwrap()).unwrap();
        let open = || Ok(Box::new(MemorySource::new(Arc::new(records))) as Box<dyn RecordSource>);
        let room = (&temp, Some(1 << 20));
        let e = crate::jobs::dedup::spill::repeats::report(
            &on_disk,
            open,
            &TextFields::default(),
            &|| false,
            room,
        )
        .unwrap_err();
        assert!(e.chain().any(|c| c.is::<std::io::Error>()), "{e:#}");
        assert!(format!("{e:#}").contains(&info.name), "{e:#}");
    }

    #[test]
    fn each_repeat_is_paired_with_the_first_record_of_its_key() {
        let mut keys = IdKeys::default();
        for (index, key) in [(0, 5), (1, 7), (3, 5), (4, 9), (6, 7), (7, 5)] {
            keys.record(index, key);
        }
        assert_eq!(keys.repeats(), [(0, 3), (1, 6), (0, 7)]);
        assert_eq!(IdKeys::default().repeats(), []);
        // Split where the keys spill: the same pairs from the two parts'
        // sorted lists, merged.
        let (mut early, mut late) = (IdKeys::default(), IdKeys::from(4));
        for (index, key) in [(0, 5), (1, 7), (3, 5)] {
            early.record(index, key);
        }
        for (index, key) in [(4, 9), (6, 7), (7, 5)] {
            late.record(index, key);
        }
        let mut both = early.sorted();
        both.extend(late.sorted());
        both.sort_unstable();
        let merged = repeats_in(both.into_iter().map(Ok::<_, ()>)).unwrap();
        assert_eq!(merged, [(0, 3), (1, 6), (0, 7)]);
    }
}
