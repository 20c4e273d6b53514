//! TPC-C's random inputs (specification clauses 2.1.6, 4.3.2 and 5.2.3):
//! NURand with its run-time constants, customer last names from syllables,
//! the random strings of the initial data, and the shuffled deck that
//! deals the transaction mix.
//!
//! Every worker owns one [`TpccRand`] seeded from its number, so a run's
//! inputs are reproducible.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The syllables of a customer last name (clause 4.3.2.3).
const SYLLABLES: [&str; 10] = ["BAR", "OUGHT", "ABLE", "PRI", "PRES", "ESE", "ANTI", "CALLY", "ATION", "EING"];

/// The constants `C` of NURand for its three uses (clause 2.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NuConstants {
    /// For `NURand(255, 0, 999)`: customer last names.
    pub c_last: i64,
    /// For `NURand(1023, 1, 3000)`: customer ids.
    pub c_id: i64,
    /// For `NURand(8191, 1, 100000)`: item ids.
    pub ol_i_id: i64,
}

impl NuConstants {
    /// Constants for loading the database.
    pub fn for_load(rng: &mut impl Rng) -> NuConstants {
        NuConstants {
            c_last: rng.random_range(0..=255),
            c_id: rng.random_range(0..=1023),
            ol_i_id: rng.random_range(0..=8191),
        }
    }

    /// Constants for a measured run: `c_last` must differ from the load's by
    /// 65..=119 but neither 96 nor 112 (clause 2.1.6.1), so the run does not
    /// favour exactly the names the load favoured.
    pub fn for_run(load: &NuConstants, rng: &mut impl Rng) -> NuConstants {
        let c_last = loop {
            let c = rng.random_range(0..=255i64);
            let delta = (c - load.c_last).abs();
            if (65..=119).contains(&delta) && delta != 96 && delta != 112 {
                break c;
            }
        };
        NuConstants { c_last, c_id: rng.random_range(0..=1023), ol_i_id: rng.random_range(0..=8191) }
    }
}

/// The customer last name of number `n` in `0..=999`: its three decimal
/// digits pick three syllables (371 is "PRICALLYOUGHT").
pub fn last_name(n: i64) -> String {
    assert!((0..=999).contains(&n), "last-name number out of range: {n}");
    let digits = [n / 100, (n / 10) % 10, n % 10];
    digits.iter().map(|&d| SYLLABLES[d as usize]).collect()
}

/// One worker's random source.
pub struct TpccRand {
    rng: StdRng,
    c: NuConstants,
}

impl TpccRand {
    pub fn new(seed: u64, c: NuConstants) -> TpccRand {
        TpccRand { rng: StdRng::seed_from_u64(seed), c }
    }

    /// Uniform in `lo..=hi`.
    pub fn uniform(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo..=hi)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    /// `NURand(A, x, y) = (((random(0, A) | random(x, y)) + C) % (y - x + 1)) + x`
    /// for the three values of `A` the specification uses.
    pub fn nurand(&mut self, a: i64, x: i64, y: i64) -> i64 {
        let c = match a {
            255 => self.c.c_last,
            1023 => self.c.c_id,
            8191 => self.c.ol_i_id,
            other => panic!("NURand is defined for A = 255, 1023, 8191, not {other}"),
        };
        (((self.uniform(0, a) | self.uniform(x, y)) + c) % (y - x + 1)) + x
    }

    /// A customer id of a transaction's input.
    pub fn customer_id(&mut self) -> i64 {
        self.nurand(1023, 1, 3000)
    }

    /// An item id of a New-Order line.
    pub fn item_id(&mut self) -> i64 {
        self.nurand(8191, 1, 100_000)
    }

    /// A last name for a lookup during the run.
    pub fn run_last_name(&mut self) -> String {
        last_name(self.nurand(255, 0, 999))
    }

    /// A random alphanumeric string of `min..=max` characters ("a-string").
    pub fn a_string(&mut self, min: usize, max: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let len = self.rng.random_range(min..=max);
        (0..len).map(|_| CHARS[self.rng.random_range(0..CHARS.len())] as char).collect()
    }

    /// A random string of `min..=max` digits ("n-string").
    pub fn n_string(&mut self, min: usize, max: usize) -> String {
        let len = self.rng.random_range(min..=max);
        (0..len).map(|_| char::from(b'0' + self.rng.random_range(0..10u8))).collect()
    }

    /// A zip code: four random digits and "11111".
    pub fn zip(&mut self) -> String {
        format!("{}11111", self.n_string(4, 4))
    }

    /// `I_DATA` / `S_DATA`: an a-string, in 10% of rows with "ORIGINAL" at
    /// a random place.
    pub fn data(&mut self, min: usize, max: usize) -> String {
        assert!(min >= 8, "a data field must have room for ORIGINAL");
        let mut s = self.a_string(min, max);
        if self.percent(10) {
            let at = self.rng.random_range(0..=s.len() - 8);
            s.replace_range(at..at + 8, "ORIGINAL");
        }
        s
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        items.shuffle(&mut self.rng);
    }
}

/// The five transactions of TPC-C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnKind {
    NewOrder,
    Payment,
    OrderStatus,
    Delivery,
    StockLevel,
}

impl TxnKind {
    pub const ALL: [TxnKind; 5] =
        [TxnKind::NewOrder, TxnKind::Payment, TxnKind::OrderStatus, TxnKind::Delivery, TxnKind::StockLevel];

    pub fn name(self) -> &'static str {
        match self {
            TxnKind::NewOrder => "New-Order",
            TxnKind::Payment => "Payment",
            TxnKind::OrderStatus => "Order-Status",
            TxnKind::Delivery => "Delivery",
            TxnKind::StockLevel => "Stock-Level",
        }
    }

    /// Cards of this kind in a deck of [`DECK_CARDS`]: the 45/43/4/4/4 mix.
    fn cards(self) -> usize {
        match self {
            TxnKind::NewOrder => 45,
            TxnKind::Payment => 43,
            TxnKind::OrderStatus | TxnKind::Delivery | TxnKind::StockLevel => 4,
        }
    }
}

pub const DECK_CARDS: usize = 100;

/// Deals transaction kinds from a shuffled deck (clause 5.2.4.2): every
/// `DECK_CARDS` deals contain the exact mix; the deck is reshuffled when
/// it runs out.
pub struct Deck {
    cards: Vec<TxnKind>,
    next: usize,
}

impl Default for Deck {
    fn default() -> Deck {
        let cards: Vec<TxnKind> = TxnKind::ALL.iter().flat_map(|&k| std::iter::repeat_n(k, k.cards())).collect();
        assert_eq!(cards.len(), DECK_CARDS);
        Deck { next: cards.len(), cards }
    }
}

impl Deck {
    pub fn deal(&mut self, rand: &mut TpccRand) -> TxnKind {
        if self.next == self.cards.len() {
            rand.shuffle(&mut self.cards);
            self.next = 0;
        }
        self.next += 1;
        self.cards[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rand(seed: u64) -> TpccRand {
        let mut r = StdRng::seed_from_u64(seed);
        TpccRand::new(seed, NuConstants::for_load(&mut r))
    }

    #[test]
    fn last_names_follow_the_syllable_table() {
        assert_eq!(last_name(371), "PRICALLYOUGHT");
        assert_eq!(last_name(0), "BARBARBAR");
        assert_eq!(last_name(999), "EINGEINGEING");
        assert_eq!(last_name(40), "BARPRESBAR");
    }

    #[test]
    fn nurand_stays_in_range_and_is_skewed() {
        let mut r = rand(7);
        let mut counts: BTreeMap<i64, u32> = BTreeMap::new();
        let draws = 200_000;
        for _ in 0..draws {
            let v = r.nurand(1023, 1, 3000);
            assert!((1..=3000).contains(&v));
            *counts.entry(v).or_default() += 1;
        }
        // Uniform would give each id ~67 draws; NURand's OR makes some ids
        // several times likelier than others.
        let max = *counts.values().max().unwrap() as f64;
        let min = *counts.values().min().unwrap() as f64;
        assert!(max / min > 3.0, "not skewed: max {max} min {min}");
        let items: Vec<i64> = (0..10_000).map(|_| r.nurand(8191, 1, 100_000)).collect();
        assert!(items.iter().all(|i| (1..=100_000).contains(i)));
        assert!((0..10_000).map(|_| r.nurand(255, 0, 999)).all(|n| (0..=999).contains(&n)));
    }

    #[test]
    fn run_constant_keeps_the_required_distance_from_the_load_constant() {
        let mut g = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let load = NuConstants::for_load(&mut g);
            let run = NuConstants::for_run(&load, &mut g);
            let d = (run.c_last - load.c_last).abs();
            assert!((65..=119).contains(&d) && d != 96 && d != 112, "delta {d}");
        }
    }

    #[test]
    fn every_hundred_deals_have_the_exact_mix_in_a_new_order() {
        let mut r = rand(3);
        let mut deck = Deck::default();
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let dealt: Vec<TxnKind> = (0..DECK_CARDS).map(|_| deck.deal(&mut r)).collect();
            let mut count: BTreeMap<TxnKind, usize> = BTreeMap::new();
            for k in &dealt {
                *count.entry(*k).or_default() += 1;
            }
            assert_eq!(count[&TxnKind::NewOrder], 45);
            assert_eq!(count[&TxnKind::Payment], 43);
            for k in [TxnKind::OrderStatus, TxnKind::Delivery, TxnKind::StockLevel] {
                assert_eq!(count[&k], 4);
            }
            rounds.push(dealt);
        }
        assert_ne!(rounds[0], rounds[1], "each deck is shuffled anew");
    }

    #[test]
    fn strings_have_the_asked_shape() {
        let mut r = rand(11);
        for _ in 0..1000 {
            let s = r.a_string(8, 16);
            assert!((8..=16).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()));
            let z = r.zip();
            assert!(z.len() == 9 && z.ends_with("11111") && z.chars().all(|c| c.is_ascii_digit()));
        }
        let original = (0..2000).filter(|_| r.data(26, 50).contains("ORIGINAL")).count();
        assert!((100..=300).contains(&original), "about 10% carry ORIGINAL: {original}");
    }
}
