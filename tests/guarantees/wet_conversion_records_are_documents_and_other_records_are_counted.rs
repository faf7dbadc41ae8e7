//! Guarantee: in a Common Crawl WET file, conversion records are the
//! documents, with their `WARC-Record-ID` as id and their
//! `WARC-Target-URI` kept (as `url` in `kept.jsonl`); `warcinfo` and other
//! record types are skipped and counted, in the log and in `summary.json`
//! (`records_skipped`, by type), not rejected. `kept.jsonl` holds each
//! kept record as `{id, url, text}`. A
//! `.warc.wet.gz` of several gzip members (as Common Crawl ships them)
//! reads the same.

use std::io::Write;

use crate::binary::drainpipe;

fn warc(kind: &str, headers: &str, content: &str) -> String {
    format!(
        "WARC/1.0\r\nWARC-Type: {kind}\r\n{headers}Content-Length: {}\r\n\r\n{content}\r\n\r\n",
        content.len()
    )
}

fn conversion(i: usize, text: &str) -> String {
    let headers = format!(
        "WARC-Target-URI: https://site{i}.example/page\r\nWARC-Record-ID: <urn:uuid:{i:08}>\r\n"
    );
    warc("conversion", &headers, text)
}

#[test]
fn wet_conversion_records_are_documents_and_other_records_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "the quick brown fox jumps over the lazy dog again and again today";
    let mut records = vec![warc(
        "warcinfo",
        "WARC-Record-ID: <urn:uuid:info>\r\n",
        "isPartOf: CC\r\n",
    )];
    records.push(conversion(1, text));
    records.push(conversion(
        2,
        "something else entirely, with other words in it",
    ));
    records.push(warc("metadata", "", "x"));
    records.push(conversion(3, text));
    let plain = tmp.path().join("cc.warc.wet");
    std::fs::write(&plain, records.concat()).unwrap();
    // One gzip member per record.
    let gz = tmp.path().join("cc2.warc.wet.gz");
    let mut members = Vec::new();
    for r in &records {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(r.as_bytes()).unwrap();
        members.extend(e.finish().unwrap());
    }
    std::fs::write(&gz, members).unwrap();
    let mut first = None;
    for (i, input) in [&plain, &gz].into_iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        let output = drainpipe()
            .args(["dedup", "-v"])
            .arg(input)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{}: WARC records other than conversions skipped (metadata: 1, warcinfo: 1)",
                input.display()
            )),
            "{stderr}"
        );
        let kept: Vec<serde_json::Value> = std::fs::read_to_string(out.join("kept.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0]["id"], "<urn:uuid:00000001>");
        assert_eq!(kept[0]["url"], "https://site1.example/page");
        assert_eq!(kept[0]["text"], text);
        assert_eq!(kept[1]["id"], "<urn:uuid:00000002>");
        let clusters = std::fs::read_to_string(out.join("clusters.jsonl")).unwrap();
        assert!(clusters.contains("\"<urn:uuid:00000003>\""), "{clusters}");
        let summary = crate::binary::summary(&out);
        assert_eq!(summary["records"]["rejected"], 0, "{summary}");
        assert_eq!(summary["records"]["read"], 3, "{summary}");
        assert_eq!(
            summary["result"]["records_skipped"],
            serde_json::json!({ "metadata": 1, "warcinfo": 1 }),
            "{summary}"
        );
        for record in &kept {
            let mut fields: Vec<&String> = record.as_object().unwrap().keys().collect();
            fields.sort();
            assert_eq!(fields, ["id", "text", "url"], "{record}");
        }
        assert_eq!(first.get_or_insert(clusters.clone()), &clusters);
    }
}
