//! The exact similarity of two shingle sets: the one definition every
//! "J >= threshold" decision goes through, in pass 2
//! ([`super::passes::verify`]), in the copy beside it
//! ([`super::passes::kept::follow`]) and in the ground truth
//! ([`super::truth`]). A kernel: it imports nothing of the job, so any
//! module may use it.

/// Size of the intersection of two sorted sets without repeats.
pub fn intersection_size(a: &[u64], b: &[u64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        n += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    n
}

/// The exact Jaccard similarity `|a ∩ b| / |a ∪ b|` of two shingle sets
/// (sorted, without repeats). Two empty sets have similarity 0: a record
/// without words is nobody's duplicate. Every "J >= threshold" decision of
/// the job and of the ground truth goes through this function.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let inter = intersection_size(a, b);
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaccard_of_sorted_sets() {
        assert_eq!(intersection_size(&[1, 3, 5, 7], &[2, 3, 7, 9]), 2);
        assert_eq!(jaccard(&[1, 3, 5, 7], &[2, 3, 7, 9]), 2.0 / 6.0);
        assert_eq!(jaccard(&[1], &[1]), 1.0);
        assert_eq!(jaccard(&[], &[]), 0.0);
        assert_eq!(jaccard(&[], &[4]), 0.0);
    }
}
