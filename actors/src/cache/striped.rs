//! [`Striped`]: a counter bumped on every hit without a shared cache line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Cells per counter: more than the cores a service runs on, so threads
/// seldom share one (two that do still count right, only slower).
const CELLS: usize = 16;

/// One cell on a cache line of its own (128 bytes: adjacent-line
/// prefetching pairs 64-byte lines on x86).
#[derive(Default)]
#[repr(align(128))]
struct Cell(AtomicU64);

/// A monotonic counter for the hot path: each thread adds to a cell of its
/// own, so a hit on one core does not take the line another core just
/// wrote (what a single `AtomicU64` bumped by every worker thread costs);
/// a read sums the cells. Reads are for metrics and tests: a sum taken
/// while others add may miss their latest additions, never counts twice.
#[derive(Default)]
pub struct Striped {
    cells: [Cell; CELLS],
}

/// The next thread's cell.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's cell, handed out in turn as threads first count.
    static CELL: usize = NEXT.fetch_add(1, Ordering::Relaxed) % CELLS;
}

impl Striped {
    /// Add `n` in the calling thread's cell.
    pub fn add(&self, n: u64) {
        let cell = CELL.with(|cell| *cell);
        self.cells[cell].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Count one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The count: the sum of the cells.
    pub fn get(&self) -> u64 {
        self.cells
            .iter()
            .map(|cell| cell.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn every_thread_s_additions_are_counted_once() {
        let counter = Arc::new(Striped::default());
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || (0..1_000).for_each(|_| counter.inc()))
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        counter.add(5);
        assert_eq!(counter.get(), 40_005);
    }

    #[test]
    fn each_cell_has_a_cache_line_of_its_own() {
        assert_eq!(std::mem::align_of::<Cell>(), 128);
        assert_eq!(std::mem::size_of::<Striped>(), CELLS * 128);
    }
}
