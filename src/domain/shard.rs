//! Which share of the id list a run handles (`SHARD_COUNT`, `SHARD_INDEX`),
//! for an Indexed Job whose pods split one list without talking to each
//! other.
//!
//! A group belongs to exactly one shard, decided by its id alone:
//!
//! ```text
//! shard(id) = (first 8 bytes of SHA-256(id as UTF-8), big-endian) mod SHARD_COUNT
//! ```
//!
//! so every pod agrees, an id repeated in the list lands in the same shard,
//! and an operator can check where an id goes with standard tools
//! (`printf %s "$id" | sha256sum`, the first 16 hex digits as a number).
//! SHA-256 spreads any set of ids evenly, sequential names included.

/// One share of the id list: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The whole list: one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// The list is split: more than one shard.
    pub fn is_split(self) -> bool {
        self.count > 1
    }

    /// The shard `id` belongs to among `count` (at least 1).
    pub fn of(id: &str, count: u32) -> u32 {
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether `id` is this shard's.
    pub fn owns(self, id: &str) -> bool {
        self.count <= 1 || Shard::of(id, self.count) == self.index
    }
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::WHOLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_documented_one() {
        // printf %s group-1 | sha256sum: the first 16 hex digits as a
        // number, mod the count.
        let digest = ring::digest::digest(&ring::digest::SHA256, b"group-1");
        let hex: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let first = u64::from_str_radix(&hex, 16).unwrap();
        for count in [1, 2, 3, 4, 7, 100] {
            assert_eq!(
                u64::from(Shard::of("group-1", count)),
                first % u64::from(count)
            );
        }
        // Fixed values, so that a change of the function cannot go unseen.
        assert_eq!(
            (0..8)
                .map(|i| Shard::of(&format!("id-{i}"), 4))
                .collect::<Vec<_>>(),
            FIXED
        );
    }

    /// `Shard::of("id-0".."id-7", 4)`, computed with `sha256sum`.
    const FIXED: [u32; 8] = [3, 2, 3, 0, 1, 3, 3, 3];

    #[test]
    fn every_id_belongs_to_exactly_one_shard() {
        for i in 0..1000 {
            let id = format!("g{i}");
            let owners = (0..5)
                .filter(|&index| Shard::new(index, 5).unwrap().owns(&id))
                .count();
            assert_eq!(owners, 1, "{id}");
        }
        assert!(Shard::WHOLE.owns("anything"));
        assert_eq!(Shard::new(4, 4), None);
        assert_eq!(Shard::new(0, 0), None);
    }

    #[test]
    fn shards_are_balanced_for_sequential_and_random_looking_ids() {
        let sets: [Vec<String>; 3] = [
            (0..400).map(|i| format!("group-{i:04}")).collect(),
            (0..400).map(|i| format!("{i}")).collect(),
            (0..400)
                .map(|i| format!("tenant-{}/g-{}", i % 7, i * 7919))
                .collect(),
        ];
        for ids in &sets {
            let mut sizes = [0u32; 4];
            for id in ids {
                sizes[Shard::of(id, 4) as usize] += 1;
            }
            let max = *sizes.iter().max().unwrap();
            // max/mean at most 1.3 (the mean is 100).
            assert!(max <= 130, "{sizes:?} for {}", ids[0]);
        }
    }
}
