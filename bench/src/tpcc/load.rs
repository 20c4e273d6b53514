//! The initial database (clause 4.3.3), generated as multi-row INSERT
//! statements that both dialects accept, in jobs loaded in parallel.
//!
//! The data is a pure function of the warehouse number and the load seed,
//! so OrdoDB and PostgreSQL load the same rows.

use super::random::{last_name, NuConstants, TpccRand};
use super::schema::Dialect;
use super::{CUSTOMERS_PER_DISTRICT, DISTRICTS_PER_WAREHOUSE, ITEMS, NEW_ORDERS_FROM};

/// The load's timestamp for dates the specification sets to "now".
pub const LOAD_TIMESTAMP: &str = "2026-01-01 00:00:00";
/// Statements are cut at about this size.
const STATEMENT_BYTES_MAX: usize = 192 * 1024;
/// Items and stock rows per job.
const ROWS_PER_JOB: i64 = 20_000;

/// One unit of loading work: a set of INSERT statements.
#[derive(Clone, Copy, Debug)]
pub enum Job {
    /// Items `from..to` (with their warehouse for OrdoDB's per-warehouse copy).
    Items {
        w_id: Option<i64>,
        from: i64,
        to: i64,
    },
    WarehouseAndDistricts {
        w_id: i64,
    },
    /// The district's customers and their history rows (and, for
    /// OrdoDB, their rows of the by-name index table).
    Customers {
        w_id: i64,
        d_id: i64,
        by_name: bool,
    },
    /// The district's orders, order lines and new orders.
    Orders {
        w_id: i64,
        d_id: i64,
    },
    Stock {
        w_id: i64,
        from: i64,
        to: i64,
    },
}

/// Every job of loading `warehouses` warehouses.
pub fn jobs(dialect: Dialect, warehouses: i64) -> Vec<Job> {
    let mut out = Vec::new();
    let item_copies: Vec<Option<i64>> = match dialect {
        Dialect::Ordo => (1..=warehouses).map(Some).collect(),
        Dialect::Postgres => vec![None],
    };
    for w_id in item_copies {
        for from in (1..=ITEMS).step_by(ROWS_PER_JOB as usize) {
            out.push(Job::Items { w_id, from, to: (from + ROWS_PER_JOB).min(ITEMS + 1) });
        }
    }
    for w_id in 1..=warehouses {
        out.push(Job::WarehouseAndDistricts { w_id });
        for d_id in 1..=DISTRICTS_PER_WAREHOUSE {
            out.push(Job::Customers { w_id, d_id, by_name: dialect == Dialect::Ordo });
            out.push(Job::Orders { w_id, d_id });
        }
        for from in (1..=ITEMS).step_by(ROWS_PER_JOB as usize) {
            out.push(Job::Stock { w_id, from, to: (from + ROWS_PER_JOB).min(ITEMS + 1) });
        }
    }
    out
}

/// The load's NURand constants (fixed, so `run` can derive its own).
pub fn load_constants() -> NuConstants {
    use rand::SeedableRng;
    NuConstants::for_load(&mut rand::rngs::StdRng::seed_from_u64(0x7bcc))
}

/// One multi-row INSERT statement.
#[derive(Debug)]
pub struct Insert {
    pub table: &'static str,
    pub sql: String,
    pub rows: u64,
}

/// Collects rows of one table into INSERT statements of bounded size.
struct Inserts {
    table: &'static str,
    done: Vec<Insert>,
    current: String,
    rows: u64,
}

impl Inserts {
    fn new(table: &'static str) -> Inserts {
        Inserts { table, done: Vec::new(), current: String::new(), rows: 0 }
    }

    fn row(&mut self, values: String) {
        if self.current.is_empty() {
            self.current = format!("INSERT INTO {} VALUES ", self.table);
        } else {
            self.current.push(',');
        }
        self.current.push_str(&values);
        self.rows += 1;
        if self.current.len() >= STATEMENT_BYTES_MAX {
            self.cut();
        }
    }

    fn cut(&mut self) {
        let sql = std::mem::take(&mut self.current);
        self.done.push(Insert { table: self.table, sql, rows: std::mem::take(&mut self.rows) });
    }

    fn finish(mut self, out: &mut Vec<Insert>) {
        if !self.current.is_empty() {
            self.cut();
        }
        out.extend(self.done);
    }
}

/// A SQL string literal.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Cents as a NUMERIC literal.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// A NUMERIC's text as an exact count of units of `10^-scale` (`"12.5"`
/// at scale 2 is 1250); `None` when it has more fraction digits.
pub fn parse_decimal(s: &str, scale: usize) -> Option<i128> {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > scale {
        return None;
    }
    let frac_units = if scale == 0 { 0 } else { format!("{frac:0<scale$}").parse::<i128>().ok()? };
    let units = int.parse::<i128>().ok()? * 10i128.pow(scale as u32) + frac_units;
    Some(if neg { -units } else { units })
}

/// The statements of one job.
pub fn statements(job: Job) -> Vec<Insert> {
    match job {
        Job::Items { w_id, from, to } => items(w_id, from, to),
        Job::WarehouseAndDistricts { w_id } => warehouse_and_districts(w_id),
        Job::Customers { w_id, d_id, by_name } => customers(w_id, d_id, by_name),
        Job::Orders { w_id, d_id } => orders(w_id, d_id),
        Job::Stock { w_id, from, to } => stock(w_id, from, to),
    }
}

/// The seed of one job's random values: its kind (`tag`) and its two ids.
fn load_seed(tag: u64, a: i64, b: i64) -> u64 {
    tag << 48 ^ (a as u64) << 24 ^ b as u64
}

/// Items `from..to`.
fn items(w_id: Option<i64>, from: i64, to: i64) -> Vec<Insert> {
    let c = load_constants();
    let mut out = Vec::new();
    // Items are the same in every copy: seeded by their range only.
    let mut r = TpccRand::new(load_seed(1, 0, from), c);
    let mut ins = Inserts::new("item");
    for i in from..to {
        let prefix = w_id.map(|w| format!("{w},")).unwrap_or_default();
        ins.row(format!(
            "({prefix}{i},{},{},{},{})",
            r.uniform(1, 10_000),
            q(&r.a_string(14, 24)),
            money(r.uniform(100, 10_000)),
            q(&r.data(26, 50))
        ));
    }
    ins.finish(&mut out);
    out
}

/// One warehouse and its districts.
fn warehouse_and_districts(w_id: i64) -> Vec<Insert> {
    let c = load_constants();
    let mut out = Vec::new();
    let mut r = TpccRand::new(load_seed(2, w_id, 0), c);
    let mut ins = Inserts::new("warehouse");
    ins.row(format!("({w_id},{},{})", address(&mut r), tax(&mut r) + ",300000.00"));
    ins.finish(&mut out);
    let mut ins = Inserts::new("district");
    for d in 1..=DISTRICTS_PER_WAREHOUSE {
        ins.row(format!("({w_id},{d},{},{},30000.00,{})", address(&mut r), tax(&mut r), CUSTOMERS_PER_DISTRICT + 1));
    }
    ins.finish(&mut out);
    out
}

/// One district's customers, their history rows and (with `by_name`)
/// the index of customers by last name.
fn customers(w_id: i64, d_id: i64, by_name: bool) -> Vec<Insert> {
    let c = load_constants();
    let mut out = Vec::new();
    let mut r = TpccRand::new(load_seed(3, w_id, d_id), c);
    let mut cust = Inserts::new("customer");
    let mut hist = Inserts::new("history");
    let mut names = Inserts::new("customer_by_name");
    for c_id in 1..=CUSTOMERS_PER_DISTRICT {
        let last = if c_id <= 1000 { last_name(c_id - 1) } else { r.run_last_name() };
        let credit = q(if r.percent(10) { "BC" } else { "GC" });
        let first = r.a_string(8, 16);
        if by_name {
            names.row(format!("({w_id},{d_id},{},{},{c_id})", q(&last), q(&first)));
        }
        cust.row(format!(
            "({w_id},{d_id},{c_id},{},'OE',{},{},{},{},{},{},{},{},{credit},50000.00,0.{:04},-10.00,10.00,1,0,{})",
            q(&first),
            q(&last),
            q(&r.a_string(10, 20)),
            q(&r.a_string(10, 20)),
            q(&r.a_string(10, 20)),
            q(&r.a_string(2, 2)),
            q(&r.zip()),
            q(&r.n_string(16, 16)),
            q(LOAD_TIMESTAMP),
            r.uniform(0, 5000),
            q(&r.a_string(300, 500)),
        ));
        let h_id = (d_id - 1) * CUSTOMERS_PER_DISTRICT + c_id;
        hist.row(format!(
            "({w_id},{h_id},{c_id},{d_id},{w_id},{d_id},{},10.00,{})",
            q(LOAD_TIMESTAMP),
            q(&r.a_string(12, 24))
        ));
    }
    cust.finish(&mut out);
    hist.finish(&mut out);
    names.finish(&mut out);
    out
}

/// One district's orders, order lines and new orders.
fn orders(w_id: i64, d_id: i64) -> Vec<Insert> {
    let c = load_constants();
    let mut out = Vec::new();
    let mut r = TpccRand::new(load_seed(4, w_id, d_id), c);
    let mut customers: Vec<i64> = (1..=CUSTOMERS_PER_DISTRICT).collect();
    r.shuffle(&mut customers);
    let mut orders = Inserts::new("orders");
    let mut lines = Inserts::new("order_line");
    let mut news = Inserts::new("new_order");
    for (o_id, c_id) in (1..).zip(customers) {
        let delivered = o_id < NEW_ORDERS_FROM;
        let carrier = if delivered { r.uniform(1, 10).to_string() } else { "NULL".into() };
        let ol_cnt = r.uniform(5, 15);
        orders.row(format!("({w_id},{d_id},{o_id},{c_id},{},{carrier},{ol_cnt},1)", q(LOAD_TIMESTAMP)));
        for n in 1..=ol_cnt {
            let (delivery, amount) = if delivered {
                (q(LOAD_TIMESTAMP), "0.00".to_string())
            } else {
                ("NULL".into(), money(r.uniform(1, 999_999)))
            };
            lines.row(format!(
                "({w_id},{d_id},{o_id},{n},{},{w_id},{delivery},5,{amount},{})",
                r.uniform(1, ITEMS),
                q(&r.a_string(24, 24))
            ));
        }
        if !delivered {
            news.row(format!("({w_id},{d_id},{o_id})"));
        }
    }
    orders.finish(&mut out);
    lines.finish(&mut out);
    news.finish(&mut out);
    out
}

/// Stock of items `from..to` in one warehouse.
fn stock(w_id: i64, from: i64, to: i64) -> Vec<Insert> {
    let c = load_constants();
    let mut out = Vec::new();
    let mut r = TpccRand::new(load_seed(5, w_id, from), c);
    let mut ins = Inserts::new("stock");
    for i in from..to {
        let dists: String = (0..10).map(|_| format!("{},", q(&r.a_string(24, 24)))).collect();
        ins.row(format!("({w_id},{i},{},{dists}0,0,0,{})", r.uniform(10, 100), q(&r.data(26, 50))));
    }
    ins.finish(&mut out);
    out
}

/// name, street 1, street 2, city, state, zip.
fn address(r: &mut TpccRand) -> String {
    format!(
        "{},{},{},{},{},{}",
        q(&r.a_string(6, 10)),
        q(&r.a_string(10, 20)),
        q(&r.a_string(10, 20)),
        q(&r.a_string(10, 20)),
        q(&r.a_string(2, 2)),
        q(&r.zip())
    )
}

/// A tax rate 0.0000..=0.2000.
fn tax(r: &mut TpccRand) -> String {
    format!("0.{:04}", r.uniform(0, 2000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_cover_the_specified_cardinalities() {
        let mut rows = std::collections::BTreeMap::new();
        for job in jobs(Dialect::Ordo, 1) {
            for ins in statements(job) {
                assert!(ins.sql.len() < STATEMENT_BYTES_MAX + 1024);
                assert!(ins.sql.starts_with(&format!("INSERT INTO {} VALUES (", ins.table)));
                *rows.entry(ins.table).or_insert(0u64) += ins.rows;
            }
        }
        assert_eq!(rows["item"], 100_000);
        assert_eq!(rows["customer_by_name"], 30_000);
        assert_eq!(rows["stock"], 100_000);
        assert_eq!(rows["warehouse"], 1);
        assert_eq!(rows["customer"], 30_000);
        assert_eq!(rows["history"], 30_000);
        assert_eq!(rows["new_order"], 9_000);
        let lines = rows["order_line"];
        assert!((270_000..=330_000).contains(&lines), "{lines} order lines");
    }
}
