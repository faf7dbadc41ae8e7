//! Union-find (disjoint sets) over dense ids, with the smallest id as the
//! root of each set: records are numbered in input order, so a cluster's
//! root is its first record, the one that is kept.

/// Disjoint sets of `0..n`, each represented by its smallest member.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
        }
    }

    /// `n` singletons again, the room kept (a union-find reused for one
    /// piece of a list after another).
    pub fn reset(&mut self, n: usize) {
        self.parent.clear();
        self.parent.reserve_exact(n);
        self.parent.extend(0..n as u32);
    }

    /// The smallest member of `x`'s set (halving the path on the way).
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// Merges the sets of `a` and `b`; the smaller root becomes the root.
    /// Returns false when they were already one set.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi as usize] = lo;
        true
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// True when there is no element.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_smallest_member() {
        let mut uf = UnionFind::new(6);
        assert!(uf.union(4, 5));
        assert!(uf.union(5, 2));
        assert!(!uf.union(4, 2));
        assert!(uf.union(3, 1));
        assert_eq!(uf.find(5), 2);
        assert_eq!(uf.find(3), 1);
        assert!(uf.union(5, 3));
        assert_eq!(
            (0..6).map(|x| uf.find(x)).collect::<Vec<_>>(),
            [0, 1, 1, 1, 1, 1]
        );
        uf.reset(3);
        assert_eq!((uf.len(), uf.find(2)), (3, 2));
    }
}
