//! An ordered set with ranks: the sorted-set index.
//!
//! A treap (a binary search tree whose nodes are also heap-ordered by a
//! priority) where every node counts the items of its subtree, so that the
//! rank of an item, the item at a rank and the boundary of a monotone
//! predicate (`partition_point`) are one descent each: O(log N) expected.
//! Walking M items from a rank costs O(log N + M).
//!
//! Nodes live in one dense arena and point at each other by `u32` index; a
//! removed node's slot is refilled with the arena's last node (found again by
//! its item, since items are unique and ordered), so the arena never holds
//! holes. A node's priority is a seeded hash of its item: the tree's shape is
//! a function of the items alone, and a client that does not know the
//! process's hash seed cannot choose items that make the tree deep.
//!
//! Invariants (checked by [`RankedSet::invariants_hold`]): in-order traversal
//! is strictly increasing; every parent's priority is at least its
//! children's; every `size` is 1 plus its children's sizes; the arena holds
//! exactly the reachable nodes.

use std::cmp::Ordering;
use std::hash::{BuildHasher, Hash};

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Node<T> {
    item: T,
    prio: u32,
    left: u32,
    right: u32,
    size: u32,
}

/// An ordered set of unique items with O(log N) rank and select.
#[derive(Clone, Debug)]
pub struct RankedSet<T> {
    nodes: Vec<Node<T>>,
    root: u32,
    hasher: super::Hasher,
}

impl<T> Default for RankedSet<T> {
    fn default() -> Self {
        RankedSet {
            nodes: Vec::new(),
            root: NIL,
            hasher: super::hasher(),
        }
    }
}

impl<T: Ord + Hash> RankedSet<T> {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn node(&self, i: u32) -> &Node<T> {
        &self.nodes[i as usize]
    }

    fn node_mut(&mut self, i: u32) -> &mut Node<T> {
        &mut self.nodes[i as usize]
    }

    fn size(&self, i: u32) -> usize {
        if i == NIL {
            0
        } else {
            self.node(i).size as usize
        }
    }

    fn fix_size(&mut self, i: u32) {
        let n = self.node(i);
        let s = 1 + self.size(n.left) + self.size(n.right);
        self.node_mut(i).size = s as u32;
    }

    /// Splits the subtree at `t` into the items below node `at`'s item and
    /// the rest.
    fn split(&mut self, t: u32, at: u32) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.node(t).item < self.node(at).item {
            let (l, r) = self.split(self.node(t).right, at);
            self.node_mut(t).right = l;
            self.fix_size(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.node(t).left, at);
            self.node_mut(t).left = r;
            self.fix_size(t);
            (l, t)
        }
    }

    /// Joins two subtrees, every item of `a` below every item of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.node(a).prio >= self.node(b).prio {
            let r = self.merge(self.node(a).right, b);
            self.node_mut(a).right = r;
            self.fix_size(a);
            a
        } else {
            let l = self.merge(a, self.node(b).left);
            self.node_mut(b).left = l;
            self.fix_size(b);
            b
        }
    }

    fn insert_at(&mut self, t: u32, new: u32) -> u32 {
        if t == NIL {
            return new;
        }
        if self.node(new).prio > self.node(t).prio {
            let (l, r) = self.split(t, new);
            let n = self.node_mut(new);
            n.left = l;
            n.right = r;
            self.fix_size(new);
            return new;
        }
        if self.node(new).item < self.node(t).item {
            let l = self.insert_at(self.node(t).left, new);
            self.node_mut(t).left = l;
        } else {
            let r = self.insert_at(self.node(t).right, new);
            self.node_mut(t).right = r;
        }
        self.fix_size(t);
        t
    }

    /// Inserts `item`; false (and nothing changes) if it is already present.
    pub fn insert(&mut self, item: T) -> bool {
        if self.contains(&item) {
            return false;
        }
        debug_assert!(self.nodes.len() < NIL as usize);
        let prio = self.hasher.hash_one(&item) as u32;
        let new = self.nodes.len() as u32;
        self.nodes.push(Node {
            item,
            prio,
            left: NIL,
            right: NIL,
            size: 1,
        });
        self.root = self.insert_at(self.root, new);
        true
    }

    fn remove_at(&mut self, t: u32, item: &T, found: &mut u32) -> u32 {
        if t == NIL {
            return NIL;
        }
        match item.cmp(&self.node(t).item) {
            Ordering::Equal => {
                *found = t;
                let (l, r) = (self.node(t).left, self.node(t).right);
                self.merge(l, r)
            }
            Ordering::Less => {
                let l = self.remove_at(self.node(t).left, item, found);
                self.node_mut(t).left = l;
                self.fix_size(t);
                t
            }
            Ordering::Greater => {
                let r = self.remove_at(self.node(t).right, item, found);
                self.node_mut(t).right = r;
                self.fix_size(t);
                t
            }
        }
    }

    /// Removes `item`; false if it was not there.
    pub fn remove(&mut self, item: &T) -> bool {
        let mut found = NIL;
        self.root = self.remove_at(self.root, item, &mut found);
        if found == NIL {
            return false;
        }
        // Fill the hole with the arena's last node: whoever pointed at the
        // last node (found by its item) points at the hole instead.
        let last = (self.nodes.len() - 1) as u32;
        if found != last {
            let mut at = self.root;
            let mut parent = NIL;
            while at != last && at != NIL {
                parent = at;
                at = if self.node(last).item < self.node(at).item {
                    self.node(at).left
                } else {
                    self.node(at).right
                };
            }
            if parent == NIL {
                self.root = found;
            } else if self.node(parent).left == last {
                self.node_mut(parent).left = found;
            } else {
                self.node_mut(parent).right = found;
            }
        }
        self.nodes.swap_remove(found as usize);
        if self.nodes.is_empty() {
            self.nodes = Vec::new();
        }
        true
    }

    pub fn contains(&self, item: &T) -> bool {
        let mut t = self.root;
        while t != NIL {
            match item.cmp(&self.node(t).item) {
                Ordering::Equal => return true,
                Ordering::Less => t = self.node(t).left,
                Ordering::Greater => t = self.node(t).right,
            }
        }
        false
    }

    /// How many items satisfy `below`, which must hold for a prefix of the
    /// order and not after it (e.g. `|x| x < y`): the rank where it turns.
    pub fn partition_point(&self, below: impl Fn(&T) -> bool) -> usize {
        let mut t = self.root;
        let mut rank = 0;
        while t != NIL {
            let n = self.node(t);
            if below(&n.item) {
                rank += self.size(n.left) + 1;
                t = n.right;
            } else {
                t = n.left;
            }
        }
        rank
    }

    /// The number of items below `item` (its rank when present).
    pub fn rank(&self, item: &T) -> usize {
        self.partition_point(|x| x < item)
    }

    /// The item at `rank` (0-based), if any.
    pub fn get(&self, rank: usize) -> Option<&T> {
        let mut t = self.root;
        let mut rank = rank;
        while t != NIL {
            let n = self.node(t);
            let l = self.size(n.left);
            match rank.cmp(&l) {
                Ordering::Less => t = n.left,
                Ordering::Equal => return Some(&n.item),
                Ordering::Greater => {
                    rank -= l + 1;
                    t = n.right;
                }
            }
        }
        None
    }

    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    pub fn last(&self) -> Option<&T> {
        self.len().checked_sub(1).and_then(|r| self.get(r))
    }

    /// The items from `rank` upwards, ascending.
    pub fn iter_from(&self, rank: usize) -> Iter<'_, T> {
        let mut it = Iter {
            set: self,
            stack: Vec::new(),
            rev: false,
        };
        // The path to `rank`, keeping the nodes that come after it.
        let mut t = self.root;
        let mut rank = rank;
        while t != NIL {
            let n = self.node(t);
            let l = self.size(n.left);
            if rank <= l {
                it.stack.push(t);
                if rank == l {
                    break;
                }
                t = n.left;
            } else {
                rank -= l + 1;
                t = n.right;
            }
        }
        it
    }

    /// The items from `rank` downwards, descending (nothing past the end).
    pub fn iter_rev_from(&self, rank: usize) -> Iter<'_, T> {
        let mut it = Iter {
            set: self,
            stack: Vec::new(),
            rev: true,
        };
        if rank >= self.len() {
            return it;
        }
        let mut t = self.root;
        let mut rank = rank;
        while t != NIL {
            let n = self.node(t);
            let l = self.size(n.left);
            if rank >= l {
                it.stack.push(t);
                if rank == l {
                    break;
                }
                rank -= l + 1;
                t = n.right;
            } else {
                t = n.left;
            }
        }
        it
    }

    pub fn iter(&self) -> Iter<'_, T> {
        self.iter_from(0)
    }

    /// The tree's invariants (see the module docs). O(N): for tests and
    /// debug assertions.
    pub fn invariants_hold(&self) -> bool {
        let mut seen = 0usize;
        let ok = self.check(self.root, None, None, &mut seen);
        ok.is_some() && seen == self.nodes.len()
    }

    /// The subtree's size if it is well formed within `(lo, hi)`.
    fn check(&self, t: u32, lo: Option<&T>, hi: Option<&T>, seen: &mut usize) -> Option<usize> {
        if t == NIL {
            return Some(0);
        }
        let n = self.nodes.get(t as usize)?;
        *seen += 1;
        if *seen > self.nodes.len()
            || lo.is_some_and(|lo| n.item <= *lo)
            || hi.is_some_and(|hi| n.item >= *hi)
        {
            return None;
        }
        for c in [n.left, n.right] {
            if c != NIL && self.nodes.get(c as usize)?.prio > n.prio {
                return None;
            }
        }
        let l = self.check(n.left, lo, Some(&n.item), seen)?;
        let r = self.check(n.right, Some(&n.item), hi, seen)?;
        (n.size as usize == l + r + 1).then_some(l + r + 1)
    }
}

/// In-order walk (ascending, or descending when `rev`) with an explicit path.
pub struct Iter<'a, T> {
    set: &'a RankedSet<T>,
    stack: Vec<u32>,
    rev: bool,
}

impl<'a, T: Ord + Hash> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let t = self.stack.pop()?;
        let set: &'a RankedSet<T> = self.set;
        let n = set.node(t);
        let mut c = if self.rev { n.left } else { n.right };
        while c != NIL {
            self.stack.push(c);
            let cn = set.node(c);
            c = if self.rev { cn.right } else { cn.left };
        }
        Some(&n.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Step {
        Insert(u16),
        Remove(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u16..300).prop_map(Step::Insert),
            2 => (0u16..300).prop_map(Step::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Every query agrees with a BTreeSet after any mix of inserts and
        /// removes.
        #[test]
        fn agrees_with_a_sorted_set(steps in proptest::collection::vec(step(), 0..400), probe in 0u16..300) {
            let mut t: RankedSet<u16> = RankedSet::default();
            let mut model = BTreeSet::new();
            for s in &steps {
                match *s {
                    Step::Insert(x) => prop_assert_eq!(t.insert(x), model.insert(x)),
                    Step::Remove(x) => prop_assert_eq!(t.remove(&x), model.remove(&x)),
                }
            }
            prop_assert!(t.invariants_hold());
            prop_assert_eq!(t.len(), model.len());
            let sorted: Vec<u16> = model.iter().copied().collect();
            prop_assert_eq!(t.iter().copied().collect::<Vec<_>>(), sorted.clone());
            prop_assert_eq!(t.rank(&probe), model.range(..probe).count());
            prop_assert_eq!(t.contains(&probe), model.contains(&probe));
            prop_assert_eq!(t.partition_point(|&x| x <= probe), model.range(..=probe).count());
            prop_assert_eq!(t.first(), model.first());
            prop_assert_eq!(t.last(), model.last());
            for r in 0..=sorted.len() {
                prop_assert_eq!(t.get(r), sorted.get(r));
                prop_assert_eq!(
                    t.iter_from(r).copied().collect::<Vec<_>>(),
                    sorted[r..].to_vec()
                );
                let down: Vec<u16> = sorted.iter().take(r + 1).rev().copied().collect();
                let want = if r < sorted.len() { down } else { Vec::new() };
                prop_assert_eq!(t.iter_rev_from(r).copied().collect::<Vec<_>>(), want);
            }
        }
    }

    #[test]
    fn sorted_inserts_stay_shallow() {
        let mut t: RankedSet<u32> = RankedSet::default();
        for i in 0..200_000u32 {
            t.insert(i);
        }
        fn depth(t: &RankedSet<u32>, i: u32) -> usize {
            if i == NIL {
                0
            } else {
                1 + depth(t, t.node(i).left).max(depth(t, t.node(i).right))
            }
        }
        // Expected depth of a random treap is about 2.99 ln N (~37 here).
        assert!(depth(&t, t.root) < 100);
        assert_eq!(t.rank(&150_000), 150_000);
        assert_eq!(t.get(199_999), Some(&199_999));
        for i in (0..200_000u32).step_by(2) {
            assert!(t.remove(&i));
        }
        assert!(t.invariants_hold());
        assert_eq!(t.get(0), Some(&1));
    }
}
