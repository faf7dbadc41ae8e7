//! The embedded demo corpus: deterministic synthetic documents, generated
//! lazily, so a fresh machine has something real to run on.
//!
//! Document `i` is a pure function of `(seed, i)`: nothing is kept in memory
//! and any document can be regenerated (the near-duplicate of a document is
//! made by regenerating that document and editing it). Words come from a
//! Zipfian vocabulary of pronounceable pseudo-words.

use drainpipe_actors::{BatchBuilder, InputError, RecordSource};

/// A small, fast, well-mixed deterministic generator (SplitMix64). Not for
/// cryptography; chosen so the corpus is identical on every platform and
/// every version of every dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    /// Number of documents.
    pub docs: u64,
    /// Fewest words per document.
    pub min_words: usize,
    /// Most words per document.
    pub max_words: usize,
    /// Distinct words in the vocabulary.
    pub vocabulary: usize,
    /// Zipf exponent of word frequencies.
    pub zipf_s: f64,
    /// Fraction of documents that are near-duplicates of another one.
    pub dup_fraction: f64,
    /// Fewest word edits of a near-duplicate, as a fraction of its words.
    pub min_edit: f64,
    /// Most word edits of a near-duplicate, as a fraction of its words.
    pub max_edit: f64,
    /// The seed: same seed, same corpus.
    pub seed: u64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            docs: 50_000,
            min_words: 200,
            max_words: 400,
            vocabulary: 50_000,
            zipf_s: 1.0,
            dup_fraction: 0.10,
            min_edit: 0.01,
            max_edit: 0.05,
            seed: 0x5EED_D0C5,
        }
    }
}

/// A generator of the corpus described by a [`CorpusSpec`].
#[derive(Debug, Clone)]
pub struct Corpus {
    spec: CorpusSpec,
    words: Vec<String>,
    /// Cumulative Zipf weights.
    cdf: Vec<f64>,
    /// `guide[k]` is the first word whose cumulative weight reaches
    /// `k / guide.len()` of the total: sampling starts there and scans a
    /// step or two instead of a binary search (the guide-table method).
    guide: Vec<u32>,
}

/// One generated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Its position in the corpus, from 0.
    pub index: u64,
    /// The text: words separated by spaces, with some punctuation and
    /// capitals so normalization has work to do.
    pub text: String,
    /// The document it is a near-duplicate of, if it is one.
    pub near_duplicate_of: Option<u64>,
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "zu", "ba", "de", "fi", "go", "ha", "ji",
    "ku", "le", "mo", "ni", "po", "ri", "sa", "te", "vi", "wo", "xe", "yu", "ze", "an", "el", "or",
];

impl Corpus {
    /// Prepares the vocabulary for `spec`.
    pub fn new(spec: CorpusSpec) -> Self {
        let mut words = Vec::with_capacity(spec.vocabulary);
        let mut seen = std::collections::HashSet::with_capacity(spec.vocabulary);
        let mut rng = SplitMix64::new(spec.seed ^ 0xA11C_E5ED);
        while words.len() < spec.vocabulary {
            let syllables = 1 + (rng.next_u64() % 4) as usize;
            let word: String = (0..syllables)
                .map(|_| SYLLABLES[(rng.next_u64() % SYLLABLES.len() as u64) as usize])
                .collect();
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let mut cdf = Vec::with_capacity(words.len());
        let mut acc = 0.0;
        for rank in 1..=words.len() {
            acc += 1.0 / (rank as f64).powf(spec.zipf_s);
            cdf.push(acc);
        }
        let total = cdf[cdf.len() - 1];
        let slots = cdf.len();
        let guide = (0..slots)
            .map(|k| {
                let x = total * k as f64 / slots as f64;
                cdf.partition_point(|&c| c < x) as u32
            })
            .collect();
        Corpus {
            spec,
            words,
            cdf,
            guide,
        }
    }

    /// The specification.
    pub fn spec(&self) -> &CorpusSpec {
        &self.spec
    }

    /// A word drawn from the Zipf distribution: the first word whose
    /// cumulative weight reaches a uniform draw.
    fn word(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        let x = u * self.cdf[self.cdf.len() - 1];
        let mut i = self.guide[(u * self.guide.len() as f64) as usize] as usize;
        while i < self.cdf.len() - 1 && self.cdf[i] < x {
            i += 1;
        }
        i
    }

    fn base_words(&self, index: u64) -> Vec<usize> {
        let mut rng = SplitMix64::new(self.spec.seed ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let n = rng.range(self.spec.min_words as u64, self.spec.max_words as u64) as usize;
        (0..n).map(|_| self.word(&mut rng)).collect()
    }

    /// Document `index`.
    pub fn doc(&self, index: u64) -> Doc {
        let mut rng = SplitMix64::new(!self.spec.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let is_dup = self.spec.docs > 1 && rng.next_f64() < self.spec.dup_fraction;
        let (words, near_duplicate_of) = if is_dup {
            let mut of = rng.range(0, self.spec.docs - 2);
            if of >= index {
                of += 1;
            }
            let mut words = self.base_words(of);
            let rate =
                self.spec.min_edit + rng.next_f64() * (self.spec.max_edit - self.spec.min_edit);
            let edits = ((words.len() as f64 * rate).round() as usize).max(1);
            for _ in 0..edits {
                let at = rng.range(0, words.len() as u64 - 1) as usize;
                match rng.next_u64() % 3 {
                    0 => words[at] = self.word(&mut rng),
                    1 => words.insert(at, self.word(&mut rng)),
                    _ if words.len() > 1 => {
                        words.remove(at);
                    }
                    _ => {}
                }
            }
            (words, Some(of))
        } else {
            (self.base_words(index), None)
        };
        Doc {
            index,
            text: self.render(&words, &mut rng),
            near_duplicate_of,
        }
    }

    /// Words to text: sentences of 8 to 20 words, capitalized, ending in a
    /// full stop; formatting randomness that normalization must see through.
    fn render(&self, words: &[usize], rng: &mut SplitMix64) -> String {
        let mut text = String::with_capacity(words.len() * 7);
        let mut sentence_left = 0;
        for (i, &w) in words.iter().enumerate() {
            let word = &self.words[w];
            if sentence_left == 0 {
                if i > 0 {
                    text.push_str(". ");
                }
                sentence_left = rng.range(8, 20);
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    text.extend(first.to_uppercase());
                    text.push_str(chars.as_str());
                }
            } else {
                text.push(' ');
                text.push_str(word);
            }
            sentence_left -= 1;
        }
        if !words.is_empty() {
            text.push('.');
        }
        text
    }

    /// Every document in order, generated lazily.
    pub fn docs(&self) -> impl Iterator<Item = Doc> + '_ {
        (0..self.spec.docs).map(|i| self.doc(i))
    }

    /// Writes the corpus to `out` as Parquet: columns `id` (int64) and
    /// `text` (string), `group` rows per row group, snappy-compressed (as
    /// pyarrow writes by default); the same records as the JSON Lines form.
    /// Holds one row group's documents at a time.
    pub fn write_parquet<W: std::io::Write + Send>(
        &self,
        out: W,
        group: usize,
    ) -> Result<W, parquet::errors::ParquetError> {
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        use std::sync::Arc;
        let schema = parquet::schema::parser::parse_message_type(
            "message corpus { required int64 id; required binary text (UTF8); }",
        )?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut writer = parquet::file::writer::SerializedFileWriter::new(
            out,
            Arc::new(schema),
            Arc::new(props),
        )?;
        let mut docs = self.docs().peekable();
        while docs.peek().is_some() {
            let chunk: Vec<Doc> = docs.by_ref().take(group.max(1)).collect();
            let ids: Vec<i64> = chunk.iter().map(|d| d.index as i64).collect();
            let texts: Vec<ByteArray> = chunk.iter().map(|d| d.text.as_str().into()).collect();
            let mut rows = writer.next_row_group()?;
            for column in 0..2 {
                let mut column_writer = rows.next_column()?.expect("two columns");
                if column == 0 {
                    column_writer
                        .typed::<Int64Type>()
                        .write_batch(&ids, None, None)?;
                } else {
                    column_writer
                        .typed::<ByteArrayType>()
                        .write_batch(&texts, None, None)?;
                }
                column_writer.close()?;
            }
            rows.close()?;
        }
        writer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Corpus {
        Corpus::new(CorpusSpec {
            docs: 200,
            vocabulary: 2_000,
            ..CorpusSpec::default()
        })
    }

    #[test]
    fn guided_sampling_equals_binary_search() {
        let corpus = small();
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100_000 {
            let x = b.next_f64() * corpus.cdf[corpus.cdf.len() - 1];
            let expected = corpus
                .cdf
                .partition_point(|&c| c < x)
                .min(corpus.words.len() - 1);
            assert_eq!(corpus.word(&mut a), expected);
        }
    }

    #[test]
    fn the_corpus_is_deterministic() {
        let a: Vec<Doc> = small().docs().collect();
        let b: Vec<Doc> = small().docs().collect();
        assert_eq!(a, b);
    }

    #[test]
    fn about_a_tenth_are_near_duplicates_of_another_document() {
        let corpus = small();
        let dups: Vec<Doc> = corpus
            .docs()
            .filter(|d| d.near_duplicate_of.is_some())
            .collect();
        assert!(
            (8..=35).contains(&dups.len()),
            "{} near-duplicates",
            dups.len()
        );
        for d in dups {
            assert_ne!(d.near_duplicate_of, Some(d.index));
            let n = d.text.split_whitespace().count();
            assert!((150..=450).contains(&n), "{n} words");
        }
    }
}

/// The demo corpus of `docs` documents (the default spec otherwise), built
/// once per process and shared: the record parser expands demo records
/// with it on every processor thread.
pub fn demo_corpus(docs: u64) -> std::sync::Arc<Corpus> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CORPORA: OnceLock<Mutex<HashMap<u64, Arc<Corpus>>>> = OnceLock::new();
    thread_local! {
        // The last corpus this thread used: no lock on the per-record path.
        static LAST: std::cell::RefCell<Option<Arc<Corpus>>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(c) if c.spec.docs == docs => Arc::clone(c),
            _ => {
                let corpus = Arc::clone(
                    CORPORA
                        .get_or_init(Default::default)
                        .lock()
                        .expect("corpus cache poisoned")
                        .entry(docs)
                        .or_insert_with(|| {
                            Arc::new(Corpus::new(CorpusSpec {
                                docs,
                                ..CorpusSpec::default()
                            }))
                        }),
                );
                *last = Some(Arc::clone(&corpus));
                corpus
            }
        }
    })
}

/// The demo corpus as a [`RecordSource`]: one record per document, origin
/// `demo`, line = index + 1. A record is only the recipe of its document
/// (format [`crate::input::FORMAT_DEMO`]); the parser generates the text,
/// so the single Source thread does not have to, and every pass over the
/// demo is as parallel as the processors.
#[derive(Debug)]
pub struct DemoSource {
    corpus: std::sync::Arc<Corpus>,
    next: u64,
    origin: std::sync::Arc<str>,
}

impl DemoSource {
    /// A source over the demo corpus of `docs` documents.
    pub fn new(docs: u64) -> Self {
        DemoSource {
            corpus: demo_corpus(docs),
            next: 0,
            origin: std::sync::Arc::from("demo"),
        }
    }
}

impl RecordSource for DemoSource {
    fn fill(
        &mut self,
        batch: &mut BatchBuilder,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<bool, InputError> {
        while self.next < self.corpus.spec.docs
            && batch.len() < max_records
            && (batch.is_empty() || batch.data_bytes() < max_bytes)
        {
            let recipe = format!("{}:{}", self.corpus.spec.docs, self.next);
            self.next += 1;
            batch.push(
                &self.origin,
                self.next,
                crate::input::FORMAT_DEMO,
                recipe.as_bytes(),
            );
        }
        Ok(!batch.is_empty())
    }

    fn position(&self) -> u64 {
        self.next
    }

    fn total(&self) -> Option<u64> {
        Some(self.corpus.spec.docs)
    }
}
