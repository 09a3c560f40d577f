//! A Merkle tree over the global log, in RFC 9162's shapes (Certificate Transparency v2, §2.1):
//! the leaves are the events in position order, each leaf's input the event row's chain hash
//! (which covers its stored payload and its stream's previous event); `MTH` of a list is
//! `SHA-256(0x00 ‖ leaf)` for one leaf and `SHA-256(0x01 ‖ MTH(left) ‖ MTH(right))` otherwise,
//! the left part the largest power of two smaller than the list. A tree head (size and root)
//! signed by the service commits to every event up to its size: a later log whose tree at that
//! size has another root was rewritten or truncated below it.
//!
//! [`Frontier`] folds leaves one at a time in O(log n) memory (the roots of the perfect
//! subtrees so far); the proofs take the leaves as a slice (issue 27 stores the tree's nodes
//! for proofs over a large log).

use sha2::{Digest, Sha256};

/// A node or leaf hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: `SHA-256(0x00 ‖ input)`.
pub fn leaf_hash(input: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(input);
    h.finalize().into()
}

/// The hash of an inner node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of an empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n ≥ 2; 1 below). From the bit length, not by
/// doubling: a doubling loop never ends above 2^63, where the next power overflows to 0 (a
/// proof asked for a tree of 2^63 + 1 leaves spun a core; schemathesis found it).
pub(crate) fn split(n: u64) -> u64 {
    if n <= 2 {
        return 1;
    }
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH` of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The tree folded so far: the roots of its perfect subtrees, largest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, root) of each perfect subtree, heights strictly decreasing.
    subtrees: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The number of leaves folded.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next leaf (its hash).
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.subtrees.last() {
            if height != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// The root of the tree of every leaf so far (RFC 9162's `MTH`).
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&(_, mut acc)) = subtrees.next() else {
            return empty_root();
        };
        for (_, left) in subtrees {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Leaves `start..end` of the log (0-based leaf indexes; leaf `i` is the event at position
/// `i + 1`): the subtree a proof's hash or a stored node stands for.
pub type Span = std::ops::Range<u64>;

/// The subtrees whose roots make the inclusion proof of leaf `index` in the tree of `size`
/// leaves (RFC 9162 §2.1.3.1's `PATH`), innermost first.
pub fn inclusion_spans(index: u64, size: u64) -> Vec<Span> {
    fn path(index: u64, tree: Span, out: &mut Vec<Span>) {
        let n = tree.end - tree.start;
        if n <= 1 {
            return;
        }
        let mid = tree.start + split(n);
        if index < mid {
            path(index, tree.start..mid, out);
            out.push(mid..tree.end);
        } else {
            path(index, mid..tree.end, out);
            out.push(tree.start..mid);
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0..size, &mut out);
    }
    out
}

/// The subtrees whose roots make the proof that the tree of `m` leaves is a prefix of the tree
/// of `n` (RFC 9162 §2.1.4.1's `PROOF` and `SUBPROOF`); none when `m` is 0 or not below `n`.
pub fn consistency_spans(m: u64, n: u64) -> Vec<Span> {
    fn subproof(m: u64, tree: Span, complete: bool, out: &mut Vec<Span>) {
        let n = tree.end - tree.start;
        if m == n {
            if !complete {
                out.push(tree);
            }
            return;
        }
        let k = split(n);
        let mid = tree.start + k;
        if m <= k {
            subproof(m, tree.start..mid, complete, out);
            out.push(mid..tree.end);
        } else {
            subproof(m - k, mid..tree.end, false, out);
            out.push(tree.start..mid);
        }
    }
    let mut out = Vec::new();
    if m > 0 && m < n {
        subproof(m, 0..n, true, &mut out);
    }
    out
}

/// Where the hashes of a tree come from: its leaves, and the roots of whole subtrees where they
/// are at hand (stored, or computed before).
pub trait Source {
    /// The hash of leaf `index`, if known.
    fn leaf(&self, index: u64) -> Option<Hash>;
    /// The root of the perfect subtree of height `level` (≥ 1) that is the `index`-th of its
    /// height (leaves `index << level .. (index + 1) << level`), if at hand; `None` has it
    /// computed from below.
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
}

/// `MTH` of the leaves of `span`, from `source`: `None` when a leaf it needs is not known.
pub fn span_root<S: Source + ?Sized>(source: &S, span: Span) -> Option<Hash> {
    let n = span.end - span.start;
    match n {
        0 => return Some(empty_root()),
        1 => return source.leaf(span.start),
        _ => {}
    }
    if n.is_power_of_two()
        && span.start.is_multiple_of(n)
        && let Some(hash) = source.node(n.trailing_zeros(), span.start / n)
    {
        return Some(hash);
    }
    let mid = span.start + split(n);
    Some(node_hash(
        &span_root(source, span.start..mid)?,
        &span_root(source, mid..span.end)?,
    ))
}

/// A slice of leaf hashes as a [`Source`] (nothing stored above the leaves).
impl Source for [Hash] {
    fn leaf(&self, index: u64) -> Option<Hash> {
        self.get(usize::try_from(index).ok()?).copied()
    }
    fn node(&self, _: u32, _: u64) -> Option<Hash> {
        None
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    proof_of(leaves, inclusion_spans(index as u64, leaves.len() as u64))
}

/// The consistency proof between the trees of the first `m` leaves and of all `leaves` (RFC
/// 9162 §2.1.4.1).
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Vec<Hash> {
    proof_of(leaves, consistency_spans(m as u64, leaves.len() as u64))
}

fn proof_of(leaves: &[Hash], spans: Vec<Span>) -> Vec<Hash> {
    spans
        .into_iter()
        // Every span lies within the leaves, so every root is known.
        .filter_map(|span| span_root(leaves, span))
        .collect()
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Checks a consistency proof between tree heads `(m, old)` and `(n, new)` (RFC 9162
/// §2.1.4.2).
pub fn verify_consistency(m: u64, n: u64, old: &Hash, new: &Hash, proof: &[Hash]) -> bool {
    if m == n {
        return proof.is_empty() && old == new;
    }
    if m == 0 || m > n {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if m.is_power_of_two() {
        path.insert(0, *old);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (m - 1, n - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == *old && sr == *new && s_n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn the_split_is_the_largest_power_of_two_below_n_up_to_the_largest_n() {
        for n in 2..=1100u64 {
            let k = split(n);
            assert!(k.is_power_of_two() && k < n && k * 2 >= n, "{n}: {k}");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
        assert_eq!(split((1 << 63) + 1), 1 << 63);
        assert_eq!(split(1 << 63), 1 << 62);
        // The tree sizes schemathesis sent: the spans are computed (and few) at once.
        assert!(consistency_spans(270, 10_637_003_888_411_912_192).len() <= 128);
        assert!(inclusion_spans(5, u64::MAX).len() <= 64);
    }

    #[test]
    fn the_frontier_folds_to_the_recursive_root() {
        let all = leaves(70);
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        for n in 1..=all.len() {
            f.push(all[n - 1]);
            assert_eq!(f.root(), root(&all[..n]), "size {n}");
            assert!(f.subtrees.len() <= 7);
        }
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_a_wrong_one_does_not() {
        let all = leaves(33);
        for n in 1..=all.len() {
            let tree = &all[..n];
            let r = root(tree);
            for i in 0..n {
                let proof = inclusion_proof(tree, i);
                assert!(
                    verify_inclusion(&tree[i], i as u64, n as u64, &proof, &r),
                    "{i}/{n}"
                );
                let other = leaf_hash(b"forged");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &proof, &r));
            }
            for m in 1..=n {
                let proof = consistency_proof(tree, m);
                let old = root(&tree[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &r, &proof),
                    "{m}->{n}"
                );
                if m < n {
                    let forged = root(&leaves(m + 100)[100..]);
                    assert!(!verify_consistency(m as u64, n as u64, &forged, &r, &proof));
                }
            }
        }
    }

    #[test]
    fn the_first_hashes_are_rfc_9162s() {
        // MTH({}) = SHA-256(""), and one leaf is SHA-256(0x00 ‖ input).
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
