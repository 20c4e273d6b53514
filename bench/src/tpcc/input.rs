//! The inputs of the five transactions (clauses 2.4.1, 2.5.1, 2.6.1,
//! 2.7.1, 2.8.1), generated once per transaction and handed to whichever
//! database runs it, so every target sees the same kind of work.

use super::random::TpccRand;
use super::{DISTRICTS_PER_WAREHOUSE, ITEMS};

/// How Payment and Order-Status name their customer.
#[derive(Clone, Debug)]
pub enum CustomerRef {
    Id(i64),
    /// 60% of the time: by last name, the middle one of the matches sorted
    /// by first name.
    LastName(String),
}

#[derive(Clone, Debug)]
pub struct OrderLine {
    pub i_id: i64,
    pub supply_w_id: i64,
    pub quantity: i64,
}

#[derive(Clone, Debug)]
pub struct NewOrder {
    pub w_id: i64,
    pub d_id: i64,
    pub c_id: i64,
    /// Sorted by (supply warehouse, item) so that concurrent orders lock
    /// stock rows in one order on lock-based systems.
    pub lines: Vec<OrderLine>,
    /// 1%: the last line names an unused item and the order rolls back.
    pub rollback: bool,
}

impl NewOrder {
    pub fn all_local(&self) -> bool {
        self.lines.iter().all(|l| l.supply_w_id == self.w_id)
    }
}

#[derive(Clone, Debug)]
pub struct Payment {
    pub w_id: i64,
    pub d_id: i64,
    pub c_w_id: i64,
    pub c_d_id: i64,
    pub customer: CustomerRef,
    /// H_AMOUNT in cents: 1.00 ..= 5000.00.
    pub amount_cents: i64,
    /// The history row's key within its warehouse, unique per run.
    pub h_id: i64,
}

#[derive(Clone, Debug)]
pub struct OrderStatus {
    pub w_id: i64,
    pub d_id: i64,
    pub customer: CustomerRef,
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub w_id: i64,
    pub carrier_id: i64,
}

#[derive(Clone, Debug)]
pub struct StockLevel {
    pub w_id: i64,
    pub d_id: i64,
    pub threshold: i64,
}

/// An item id that no item has: the 1% rolled-back New-Orders use it.
pub const UNUSED_ITEM_ID: i64 = ITEMS + 1;

/// One worker's generator: a home warehouse, the warehouse count, and a
/// counter for history keys.
pub struct Inputs {
    pub rand: TpccRand,
    pub w_id: i64,
    pub warehouses: i64,
    worker: i64,
    run_tag: i64,
    history_seq: i64,
}

impl Inputs {
    /// `run_tag` in 1..=9_000_000 tells this run's history rows from
    /// other runs' on the same database.
    pub fn new(rand: TpccRand, worker: usize, warehouses: i64, run_tag: i64) -> Inputs {
        assert!(warehouses >= 1 && worker < 10_000 && (1..=9_000_000).contains(&run_tag));
        Inputs {
            rand,
            w_id: (worker as i64 % warehouses) + 1,
            warehouses,
            worker: worker as i64,
            run_tag,
            history_seq: 0,
        }
    }

    /// A warehouse other than the home one (the home one when there is
    /// only one).
    fn other_warehouse(&mut self) -> i64 {
        if self.warehouses == 1 {
            return self.w_id;
        }
        let w = self.rand.uniform(1, self.warehouses - 1);
        if w >= self.w_id {
            w + 1
        } else {
            w
        }
    }

    fn customer(&mut self) -> CustomerRef {
        if self.rand.percent(60) {
            CustomerRef::LastName(self.rand.run_last_name())
        } else {
            CustomerRef::Id(self.rand.customer_id())
        }
    }

    pub fn new_order(&mut self) -> NewOrder {
        let d_id = self.rand.uniform(1, DISTRICTS_PER_WAREHOUSE);
        let c_id = self.rand.customer_id();
        let count = self.rand.uniform(5, 15);
        let rollback = self.rand.percent(1);
        let mut lines: Vec<OrderLine> = (0..count)
            .map(|_| {
                let i_id = self.rand.item_id();
                let supply_w_id = if self.rand.percent(1) { self.other_warehouse() } else { self.w_id };
                OrderLine { i_id, supply_w_id, quantity: self.rand.uniform(1, 10) }
            })
            .collect();
        if rollback {
            lines.last_mut().expect("at least 5 lines").i_id = UNUSED_ITEM_ID;
        }
        lines.sort_by_key(|l| (l.supply_w_id, l.i_id));
        NewOrder { w_id: self.w_id, d_id, c_id, lines, rollback }
    }

    pub fn payment(&mut self) -> Payment {
        let d_id = self.rand.uniform(1, DISTRICTS_PER_WAREHOUSE);
        let (c_w_id, c_d_id) = if self.rand.percent(85) || self.warehouses == 1 {
            (self.w_id, d_id)
        } else {
            (self.other_warehouse(), self.rand.uniform(1, DISTRICTS_PER_WAREHOUSE))
        };
        let customer = self.customer();
        self.history_seq += 1;
        assert!(self.history_seq < 100_000_000, "history ids of one worker exhausted");
        // Above the loaded rows' ids (1..=30000 per warehouse), unique per
        // run, worker and payment.
        let h_id = self.run_tag * 1_000_000_000_000 + self.worker * 100_000_000 + self.history_seq;
        Payment { w_id: self.w_id, d_id, c_w_id, c_d_id, customer, amount_cents: self.rand.uniform(100, 500_000), h_id }
    }

    pub fn order_status(&mut self) -> OrderStatus {
        let d_id = self.rand.uniform(1, DISTRICTS_PER_WAREHOUSE);
        OrderStatus { w_id: self.w_id, d_id, customer: self.customer() }
    }

    pub fn delivery(&mut self) -> Delivery {
        Delivery { w_id: self.w_id, carrier_id: self.rand.uniform(1, 10) }
    }

    pub fn stock_level(&mut self) -> StockLevel {
        StockLevel {
            w_id: self.w_id,
            d_id: self.rand.uniform(1, DISTRICTS_PER_WAREHOUSE),
            threshold: self.rand.uniform(10, 20),
        }
    }
}

/// Picks the customer of a by-last-name lookup: the ids sorted by first
/// name, position ceil(n / 2) counted from 1 (clause 2.5.2.2).
pub fn middle(ids_by_first_name: &[i64]) -> Option<i64> {
    if ids_by_first_name.is_empty() {
        return None;
    }
    Some(ids_by_first_name[(ids_by_first_name.len() - 1) / 2])
}
