//! The chunk map of a content item ([`crate::contract::ContentInfo::chunk_map`]): its held
//! chunks squeezed into at most [`CHUNK_MAP_CELLS`] cells for a picture.
//!
//! Invariants: a cell is 100 only when every chunk of its run is held and 0 only when none is
//! (percentages round down, and a run with one chunk held is at least 1); runs cover every
//! chunk once, in manifest order, and differ in length by at most one chunk.

use licet_proto::wire::Bitfield;

use crate::contract::CHUNK_MAP_CELLS;

/// The chunk map of an item whose files hold the chunks in `have` (one bitfield per file).
pub(crate) fn chunk_map(have: &[Bitfield]) -> Vec<u8> {
    let total: u64 = have.iter().map(Bitfield::len).sum();
    let cells = total.min(CHUNK_MAP_CELLS as u64);
    let mut held = have
        .iter()
        .flat_map(|bits| (0..bits.len()).map(move |chunk| bits.get(chunk)));
    (0..cells)
        .map(|cell| {
            let start = u128::from(cell) * u128::from(total) / u128::from(cells);
            let end = u128::from(cell + 1) * u128::from(total) / u128::from(cells);
            let run = (end - start) as u64;
            let count = held
                .by_ref()
                .take(run as usize)
                .filter(|held| *held)
                .count() as u64;
            percent_held(count, run)
        })
        .collect()
}

/// `count` of `run` as a percentage, rounded down, but never 0 for a count above 0.
fn percent_held(count: u64, run: u64) -> u8 {
    if run == 0 || count == 0 {
        return 0;
    }
    let percent = (u128::from(count) * 100 / u128::from(run)).max(1);
    u8::try_from(percent).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(held: &[bool]) -> Bitfield {
        let mut bits = Bitfield::new(held.len() as u64);
        for (i, h) in held.iter().enumerate() {
            bits.set(i as u64, *h);
        }
        bits
    }

    #[test]
    fn small_items_get_a_cell_per_chunk_across_files() {
        let map = chunk_map(&[bits(&[true, false]), bits(&[]), bits(&[false, true, true])]);
        assert_eq!(map, vec![100, 0, 0, 100, 100]);
        assert!(chunk_map(&[]).is_empty());
    }

    #[test]
    fn large_items_are_squeezed_rounding_towards_the_ends() {
        let n = CHUNK_MAP_CELLS * 10 + 3;
        // All held but the very last chunk; then only the first chunk.
        let mut held = vec![true; n];
        held[n - 1] = false;
        let map = chunk_map(&[bits(&held)]);
        assert_eq!(map.len(), CHUNK_MAP_CELLS);
        assert!(map[..CHUNK_MAP_CELLS - 1].iter().all(|p| *p == 100));
        assert!(map[CHUNK_MAP_CELLS - 1] < 100 && map[CHUNK_MAP_CELLS - 1] >= 90);
        // One chunk of a run of 200 is 0.5 %: shown as 1, not as nothing.
        let mut first = vec![false; CHUNK_MAP_CELLS * 200];
        first[0] = true;
        let map = chunk_map(&[bits(&first)]);
        assert_eq!(map[0], 1);
        assert!(map[1..].iter().all(|p| *p == 0));
        assert_eq!(
            chunk_map(&[bits(&vec![true; n])]),
            vec![100; CHUNK_MAP_CELLS]
        );
    }
}
