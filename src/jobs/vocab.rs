//! `vocab`: word frequencies across the corpus, the vocabulary-building step
//! of a tokenizer. Step 1 splits a record's text into lowercase words; step
//! 2 counts them; the output is `vocab.tsv` (word, count; by count
//! descending, then word).

use std::collections::HashMap;
use std::io::Write;

use drainpipe_actors::remote::RemoteJob;
use drainpipe_actors::{codec, FinishContext, Integrate, Job, RawRecord, RecordError};

use crate::input::{parse_text_record, TextFields, TextRecord};

/// The output file.
pub const VOCAB_FILE: &str = "vocab.tsv";

/// Version of the checkpointed state.
const STATE_VERSION: u32 = 1;

/// The `vocab` job.
#[derive(Debug, Clone)]
pub struct Vocab {
    fields: TextFields,
}

impl Vocab {
    /// A vocab job reading text from `fields`.
    pub fn new(fields: TextFields) -> Self {
        Vocab { fields }
    }
}

/// Appends the lowercase words of `text` to `out`, each followed by `\n`.
/// A word is a maximal run of alphanumeric characters (Unicode-aware, with
/// a fast path for ASCII).
pub fn push_words(text: &str, out: &mut String) {
    let mut in_word = false;
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
                in_word = true;
                continue;
            }
        } else if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            in_word = true;
            continue;
        }
        if in_word {
            out.push('\n');
            in_word = false;
        }
    }
    if in_word {
        out.push('\n');
    }
}

impl Job for Vocab {
    type Parsed<'a> = TextRecord<'a>;
    /// The record's words, each followed by `\n`: one allocation per record.
    type Output = String;
    type Integrator = VocabCounts;

    fn name(&self) -> &str {
        "vocab"
    }

    fn parse<'a>(&self, raw: &RawRecord<'a>) -> Result<TextRecord<'a>, RecordError> {
        parse_text_record(raw, &self.fields)
    }

    fn process(&self, record: TextRecord<'_>) -> Result<String, RecordError> {
        let mut words = String::with_capacity(record.text.len() + 1);
        push_words(&record.text, &mut words);
        Ok(words)
    }

    fn integrator(&self) -> VocabCounts {
        VocabCounts::default()
    }
}

/// Version of the parameters a worker host reads ([`Vocab::from_params`]).
const PARAMS_VERSION: u32 = 1;

impl RemoteJob for Vocab {
    fn params(&self) -> Vec<u8> {
        codec::encode(&(&self.fields.text, &self.fields.id), PARAMS_VERSION)
            .expect("two strings always encode")
    }
}

impl Vocab {
    /// The job [`RemoteJob::params`] describes, on a worker host.
    pub fn from_params(params: &[u8]) -> Result<Self, String> {
        let (text, id): (String, String) =
            codec::decode(params, PARAMS_VERSION).map_err(|e| e.to_string())?;
        Ok(Vocab::new(TextFields { text, id }))
    }
}

/// Step 2 of `vocab`: the counts.
#[derive(Debug, Default)]
pub struct VocabCounts {
    counts: HashMap<Box<str>, u64>,
    tokens: u64,
}

impl Integrate for VocabCounts {
    type Output = String;

    fn integrate(&mut self, _index: u64, words: String) -> Result<(), RecordError> {
        for word in words.split_terminator('\n') {
            self.tokens += 1;
            match self.counts.get_mut(word) {
                Some(n) => *n += 1,
                None => {
                    self.counts.insert(word.into(), 1);
                }
            }
        }
        Ok(())
    }

    fn save(&self) -> Option<Result<Vec<u8>, RecordError>> {
        Some(codec::encode(&(&self.counts, self.tokens), STATE_VERSION).map_err(Into::into))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), RecordError> {
        (self.counts, self.tokens) = codec::decode(state, STATE_VERSION)?;
        Ok(())
    }

    fn finish(&mut self, run: &FinishContext<'_>) -> Result<serde_json::Value, RecordError> {
        let mut sorted: Vec<(&str, u64)> = self.counts.iter().map(|(w, &n)| (&**w, n)).collect();
        sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut file = run.output.atomic(VOCAB_FILE)?;
        for (word, n) in &sorted {
            writeln!(file, "{word}\t{n}")
                .map_err(|e| drainpipe_actors::OutputError::new(file.target(), e))?;
        }
        // With the run's rejects, as one set, replacing another job's
        // outputs.
        run.commit_set(vec![file], &super::outputs::others(&[VOCAB_FILE]))?;
        let top: Vec<serde_json::Value> = sorted
            .iter()
            .take(10)
            .map(|(w, n)| serde_json::json!([w, n]))
            .collect();
        Ok(serde_json::json!({
            "output": VOCAB_FILE,
            "distinct_words": sorted.len(),
            "words": self.tokens,
            "top": top,
        }))
    }
}

/// Runs `vocab` over the context's input.
pub fn run(ctx: &super::RunContext) -> anyhow::Result<drainpipe_actors::RunReport> {
    let job = std::sync::Arc::new(Vocab::new(ctx.fields.clone()));
    let source = super::open_source(ctx)?;
    match &ctx.remote {
        Some(remote) => {
            let checkpoints = ctx.checkpoints()?;
            let rejects = drainpipe_actors::REJECTS_FILE;
            super::run_pass_remote(
                job,
                source,
                ctx,
                "vocab",
                checkpoints,
                rejects,
                remote.clone(),
            )
        }
        None => super::run_pass(job, source, ctx, "vocab"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_builds_the_same_vocab_job_from_its_parameters() {
        let job = Vocab::new(TextFields {
            text: "body".into(),
            id: "key".into(),
        });
        let rebuilt = Vocab::from_params(&job.params()).unwrap();
        assert_eq!(
            (rebuilt.fields.text, rebuilt.fields.id),
            ("body".into(), "key".into())
        );
        assert!(Vocab::from_params(b"not parameters").is_err());
    }

    #[test]
    fn words_are_lowercased_and_split_on_anything_not_alphanumeric() {
        let mut out = String::new();
        push_words("Hello, WORLD! l'été 2024—naïve ÉCOLE", &mut out);
        assert_eq!(out, "hello\nworld\nl\nété\n2024\nnaïve\nécole\n");
    }
}
