"""Near-duplicate detection in Python, built the way the seed article built its
pipeline: a multiprocessing Pool computes the CPU-heavy part (MinHash
signatures) and the main process integrates the results (a MinHashLSH index).

    python datasketch_pool.py corpus.jsonl [--processes 2] [--threshold 0.8]

Prints one JSON line: documents, duplicates removed, seconds, docs/s (end to
end, reading the JSON Lines included) and peak RSS.

A document is a duplicate when the LSH index returns an earlier document for
it (no exact verification, as in most datasketch pipelines). Shingles are
word 5-grams of the lowercased text, with punctuation as a word separator,
as drainpipe does.
"""

import argparse
import json
import re
import resource
import sys
import time
from multiprocessing import Pool

from datasketch import LeanMinHash, MinHash, MinHashLSH

NUM_PERM = 128
NGRAM = 5
WORD = re.compile(r"\w+")
# Made once: MinHash(num_perm=128) alone draws its permutations again for
# every document (about 190 us each, some 40% of the time to MinHash one).
PERMUTATIONS = MinHash(num_perm=NUM_PERM).permutations


def signature(line):
    """Step 1 (in a worker): parse one JSON line, shingle it, MinHash it."""
    record = json.loads(line)
    words = WORD.findall(record["text"].lower())
    shingles = {" ".join(words[i:i + NGRAM]) for i in range(max(1, len(words) - NGRAM + 1))}
    m = MinHash(num_perm=NUM_PERM, permutations=PERMUTATIONS, scheme="affine32")
    m.update_batch(s.encode("utf-8") for s in shingles)
    return record["id"], LeanMinHash(m)  # lean: only the hash values travel back


def dedup(signatures, threshold):
    """Step 2 (in the main process): query the index, then insert."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    docs = duplicates = 0
    for _id, m in signatures:
        if lsh.query(m):  # an earlier document is a candidate near-duplicate
            duplicates += 1
        lsh.insert(docs, m)  # keys are input positions (ids may repeat)
        docs += 1
    return docs, duplicates


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="JSON Lines file with {id, text} records")
    ap.add_argument("--processes", type=int, default=2, help="1: no pool, everything in this process")
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()

    start = time.perf_counter()
    with open(args.corpus, encoding="utf-8") as f:
        if args.processes == 1:
            docs, duplicates = dedup(map(signature, f), args.threshold)
        else:
            with Pool(args.processes) as p:
                docs, duplicates = dedup(p.imap(signature, f, chunksize=64), args.threshold)
                p.close()  # the article's fix: let the workers exit on their own
                p.join()   # before the with block terminates them
    seconds = time.perf_counter() - start

    # ru_maxrss is in KiB on Linux; the workers are children of this process.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "tool": "datasketch",
        "processes": args.processes,
        "docs": docs,
        "duplicates": duplicates,
        "seconds": round(seconds, 3),
        "docs_per_s": round(docs / seconds, 1),
        "peak_rss_main_mib": round(own / 1024, 1),
        "peak_rss_largest_worker_mib": round(children / 1024, 1) if args.processes > 1 else None,
    }))


if __name__ == "__main__":
    sys.exit(main())
