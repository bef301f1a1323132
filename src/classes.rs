//! Size classes: which class serves a request, and where a returned object
//! is filed.
//!
//! A request for `n` is served by the smallest class of at least `n`; an
//! object of capacity `c` is filed in the largest class of at most `c`, so
//! every object in a class can serve every request routed to that class.

use crate::pool::ConfigError;

/// Strictly increasing, positive class sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeClasses {
    sizes: Box<[usize]>,
    /// For a geometric series: log2 of its first size, so that `serving` can
    /// compute the class instead of searching for it.
    first_shift: Option<u32>,
    /// The index of the last class the computation serves; above it (a
    /// coarse tail, see [`SizeClasses::geometric_coarse`]) classes are searched.
    computed_last: usize,
}

impl SizeClasses {
    /// Explicit sizes, in any order; duplicates and zero are refused.
    /// `field` names the setting the sizes came from, for errors.
    pub fn new(mut sizes: Vec<usize>, field: &'static str) -> Result<Self, ConfigError> {
        let refuse = |message: String| Err(ConfigError { field, message });
        if sizes.is_empty() {
            return refuse(format!("{field} must name at least one size"));
        }
        sizes.sort_unstable();
        if sizes[0] == 0 {
            return refuse(format!("{field} must hold positive sizes, got 0"));
        }
        if let Some(w) = sizes.windows(2).find(|w| w[0] == w[1]) {
            return refuse(format!(
                "{field} must hold distinct sizes, got {} twice",
                w[0]
            ));
        }
        Ok(SizeClasses {
            sizes: sizes.into_boxed_slice(),
            first_shift: None,
            computed_last: 0,
        })
    }

    /// Four classes per doubling from `min` (rounded up to a power of two)
    /// to `max` (always the last class): `p, 5p/4, 6p/4, 7p/4, 2p, ...`.
    /// A request just above one class is served by the next, so no request
    /// at or above `min` wastes more than 20% of its block.
    ///
    /// Any `usize` is accepted: the series stops at the last power of two
    /// that exists (no step overflows), and a `min` above the largest power
    /// of two leaves `max` as the only class.
    pub fn geometric(min: usize, max: usize) -> Self {
        let mut sizes = Vec::new();
        let first = min.max(1).checked_next_power_of_two();
        let mut next = first;
        'outer: while let Some(p) = next.filter(|&p| p <= max) {
            for q in 4..8 {
                // Below 4, quarters are not whole: plain powers of two.
                // `p / 4 * q < 2 * p <= 2^usize::BITS`: no overflow.
                let size = if p >= 4 { p / 4 * q } else { p };
                if size > max {
                    break 'outer;
                }
                if sizes.last() != Some(&size) {
                    sizes.push(size);
                }
            }
            next = p.checked_mul(2);
        }
        if sizes.last() != Some(&max) && max > 0 {
            sizes.push(max);
        }
        SizeClasses {
            // Quarters are whole from 4 up; below, search. A series that
            // never started (`min` beyond every power of two) is searched.
            first_shift: first
                .filter(|&f| f >= 4 && sizes.first() == Some(&f))
                .map(usize::trailing_zeros),
            computed_last: sizes.len().saturating_sub(1),
            sizes: sizes.into_boxed_slice(),
        }
    }

    /// [`SizeClasses::geometric`] from `min` up to `coarse_from`, then
    /// classes four times apart (`4 * coarse_from`, `16 * coarse_from`, ...)
    /// up to `max` (always the last class).
    ///
    /// Large blocks are few and each is worth a lot of cache: fine classes
    /// there split a stream of messages over many blocks that each go cold
    /// between uses (17 classes held 24 MiB idle for messages of 256 KiB-4
    /// MiB, issue 13). A coarse class wastes address space, not memory, when
    /// its blocks are only made resident as they are written (see `memory`).
    pub fn geometric_coarse(min: usize, coarse_from: usize, max: usize) -> Self {
        if max <= coarse_from {
            return Self::geometric(min, max);
        }
        let mut classes = Self::geometric(min, coarse_from);
        // `computed_last` stays at `coarse_from`'s class: the tail is searched.
        let mut sizes = classes.sizes.into_vec();
        let mut next = coarse_from.checked_mul(4);
        while let Some(size) = next.filter(|&s| s < max) {
            sizes.push(size);
            next = size.checked_mul(4);
        }
        sizes.push(max);
        classes.sizes = sizes.into_boxed_slice();
        classes
    }

    /// How many classes.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether there is no class.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The size of class `class` (an index, smallest first).
    pub fn size(&self, class: usize) -> usize {
        self.sizes[class]
    }

    /// Every class size, smallest first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The largest class size.
    pub fn max(&self) -> usize {
        *self.sizes.last().expect("never empty")
    }

    /// The class that serves a request for `n`, if any is large enough.
    #[inline]
    pub(crate) fn serving(&self, n: usize) -> Option<usize> {
        let i = match self.first_shift {
            Some(shift) => self.geometric_index(n, shift),
            None => self.sizes.partition_point(|&s| s < n),
        };
        debug_assert_eq!(i, self.sizes.partition_point(|&s| s < n), "n={n}");
        (i < self.sizes.len()).then_some(i)
    }

    /// The smallest class of at least `n` in a geometric series, computed:
    /// for `n` in `(p, 2p]` (`p` a power of two) the classes are `q * p / 4`
    /// for `q` in 5..=8, so the answer is `q = ceil(4n / p)`, four classes
    /// per doubling above the first, up to the last computed class.
    #[inline]
    fn geometric_index(&self, n: usize, first_shift: u32) -> usize {
        let last = self.computed_last;
        if n > self.sizes[last] {
            return self.beyond_computed(n);
        }
        if n <= 1 << first_shift {
            return 0;
        }
        // p = 2^k < n <= 2^(k+1), and k >= first_shift >= 2 (n > 2^first_shift).
        let k = usize::BITS - 1 - (n - 1).leading_zeros();
        // q = ceil(n / (p / 4)), in 5..=8. Divided, never shifted up: `4n`
        // overflows for requests above a quarter of the address space.
        let q = ((n - 1) >> (k - 2)) + 1;
        // The last class may be `max` itself, off the series: a request the
        // series would round above it still fits there.
        ((k - first_shift) as usize * 4 + (q - 4)).min(last)
    }

    /// The class of `n` above the last computed class: in a coarse tail, or
    /// none (oversize). Searched, out of line: it keeps `serving`, inlined
    /// into every get and put, small.
    #[cold]
    #[inline(never)]
    fn beyond_computed(&self, n: usize) -> usize {
        let tail = self.computed_last + 1;
        tail + self.sizes[tail..].partition_point(|&s| s < n)
    }

    /// The class an object of capacity `capacity` belongs in, if it is at
    /// least the smallest class.
    #[inline]
    pub(crate) fn filing(&self, capacity: usize) -> Option<usize> {
        self.sizes
            .partition_point(|&s| s <= capacity)
            .checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_series_has_four_steps_per_doubling_and_ends_at_max() {
        let c = SizeClasses::geometric(64, 1024);
        assert_eq!(
            c.sizes(),
            &[64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024]
        );
        let odd = SizeClasses::geometric(64, 1000);
        assert_eq!(odd.max(), 1000);
        assert_eq!(odd.sizes()[odd.len() - 2], 896);
    }

    #[test]
    fn no_request_wastes_more_than_a_fifth_of_its_class() {
        let c = SizeClasses::geometric(64, 16 << 20);
        for n in (64..=(16 << 20))
            .step_by(997)
            .chain([64, 65, 81, 4097, 16 << 20])
        {
            let size = c.size(c.serving(n).unwrap());
            assert!(size >= n);
            assert!((size - n) * 5 <= size, "n={n} size={size}");
        }
    }

    #[test]
    fn computed_and_searched_classes_agree() {
        for (min, max) in [
            (64, 16 << 20),
            (64, 1000),
            (4, 4096),
            (64, 64),
            (128, 100_000),
        ] {
            let c = SizeClasses::geometric(min, max);
            for n in (0..5000).chain((5000..(max + 10)).step_by(97)).chain([
                max,
                max + 1,
                usize::MAX / 8,
            ]) {
                let searched = c.sizes.partition_point(|&s| s < n);
                let expected = (searched < c.len()).then_some(searched);
                assert_eq!(c.serving(n), expected, "min={min} max={max} n={n}");
            }
        }
    }

    /// Requests near the top of the address space: `4n` would overflow, so
    /// the class is computed without it (a 2^62-byte request once got a
    /// 2^60-byte class).
    #[test]
    fn huge_requests_get_a_class_at_least_as_large() {
        for max in [usize::MAX, usize::MAX / 2, 1 << 62, (1 << 62) + 1, 3 << 61] {
            let c = SizeClasses::geometric(64, max);
            assert_eq!(c.max(), max);
            let mut requests = vec![max, max - 1, usize::MAX / 4 + 1, 1 << 62];
            for shift in 50..usize::BITS {
                let p = 1usize << shift;
                requests.extend([p - 1, p, p + 1, p / 4 * 5, p / 4 * 5 + 1]);
            }
            for n in requests {
                let searched = c.sizes.partition_point(|&s| s < n);
                let expected = (searched < c.len()).then_some(searched);
                assert_eq!(c.serving(n), expected, "max={max} n={n}");
                if let Some(class) = c.serving(n) {
                    assert!(c.size(class) >= n, "max={max} n={n}");
                }
            }
        }
        let c = SizeClasses::geometric(64, (1 << 63) - 1);
        assert_eq!(c.size(c.serving(1 << 62).unwrap()), 1 << 62);
    }

    #[test]
    fn a_coarse_tail_is_four_times_apart_and_routes_as_a_search_would() {
        let c = SizeClasses::geometric_coarse(64, 256 << 10, 16 << 20);
        let fine = SizeClasses::geometric(64, 256 << 10);
        assert_eq!(&c.sizes()[..fine.len()], fine.sizes());
        assert_eq!(
            &c.sizes()[fine.len()..],
            &[1 << 20, 4 << 20, 16 << 20],
            "then four times apart, ending at max"
        );
        assert_eq!(
            SizeClasses::geometric_coarse(64, 256 << 10, 10 << 20).sizes()[fine.len()..],
            [1 << 20, 4 << 20, 10 << 20]
        );
        assert_eq!(
            SizeClasses::geometric_coarse(64, 256 << 10, 100 << 10),
            SizeClasses::geometric(64, 100 << 10),
            "no tail below coarse_from"
        );
        for (min, coarse, max) in [
            (64, 256 << 10, 16 << 20),
            (64, 256 << 10, (256 << 10) + 1),
            (64, 1000, 100_000),
            (4, 4096, usize::MAX),
        ] {
            let c = SizeClasses::geometric_coarse(min, coarse, max);
            let top = max.min(64 << 20);
            for n in (0..5000).chain((5000..top).step_by(4999)).chain([
                coarse,
                coarse + 1,
                top,
                max,
                max.saturating_add(1),
            ]) {
                let searched = c.sizes.partition_point(|&s| s < n);
                let expected = (searched < c.len()).then_some(searched);
                assert_eq!(c.serving(n), expected, "{min} {coarse} {max}: n={n}");
            }
        }
    }

    #[test]
    fn a_series_beyond_every_power_of_two_is_its_maximum() {
        let c = SizeClasses::geometric(usize::MAX, usize::MAX);
        assert_eq!(c.sizes(), &[usize::MAX]);
        assert_eq!(c.serving(usize::MAX), Some(0));
        assert_eq!(c.serving(5), Some(0));
        let top = SizeClasses::geometric(1 << 63, usize::MAX);
        assert_eq!(
            top.sizes(),
            &[1 << 63, 5 << 61, 6 << 61, 7 << 61, usize::MAX]
        );
        assert_eq!(top.serving((7 << 61) + 1), Some(4));
    }

    #[test]
    fn serving_and_filing_route_correctly() {
        let c = SizeClasses::new(vec![65536, 4096, 1 << 20], "classes").unwrap();
        assert_eq!(c.sizes(), &[4096, 65536, 1 << 20]);
        assert_eq!(c.serving(0), Some(0));
        assert_eq!(c.serving(4096), Some(0));
        assert_eq!(c.serving(4097), Some(1));
        assert_eq!(c.serving((1 << 20) + 1), None);
        assert_eq!(c.filing(4095), None);
        assert_eq!(c.filing(4096), Some(0));
        assert_eq!(c.filing(65535), Some(0));
        assert_eq!(c.filing(usize::MAX), Some(2));
    }

    #[test]
    fn explicit_classes_are_checked() {
        assert_eq!(
            SizeClasses::new(vec![], "classes").unwrap_err().field,
            "classes"
        );
        assert!(SizeClasses::new(vec![0, 8], "tiers")
            .unwrap_err()
            .message
            .starts_with("tiers"));
        let twice = SizeClasses::new(vec![8, 8], "tiers").unwrap_err();
        assert_eq!(twice.field, "tiers");
        assert!(twice.message.contains("twice"));
    }
}
