//! Bank: transfers between accounts must conserve the total.
//!
//! Clients transfer money between a fixed set of accounts and read all balances in one
//! transaction. Under snapshot isolation or anything stronger, every such read sees a state between
//! whole transfers, so the balances sum to the initial total, and (unless overdrafts are allowed)
//! none is negative. Only `Ok` reads are checked: a read of unknown outcome returned nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::history::OpKind;

/// One read of all account balances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankRead {
    /// Identifier used in reports.
    pub id: usize,
    pub kind: OpKind,
    pub balances: BTreeMap<u64, i64>,
}

/// What every read must satisfy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankConfig {
    pub total: i64,
    /// The accounts every read must return; empty to accept whatever accounts a read holds.
    pub accounts: Vec<u64>,
    pub allow_negative: bool,
    /// How many offending reads to describe; all of them are counted.
    pub max_reported: usize,
}

/// A violation in one read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankAnomaly {
    /// The balances do not sum to the configured total (the sum is `i128`, so it cannot overflow).
    WrongTotal {
        op: usize,
        expected: i64,
        actual: i128,
    },
    Negative {
        op: usize,
        account: u64,
        balance: i64,
    },
    /// The read's accounts differ from the configured ones.
    WrongAccounts {
        op: usize,
        missing: Vec<u64>,
        extra: Vec<u64>,
    },
}

impl fmt::Display for BankAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankAnomaly::WrongTotal { op, expected, actual } => {
                write!(f, "wrong-total: read op {op} sums to {actual}, expected {expected}")
            }
            BankAnomaly::Negative { op, account, balance } => {
                write!(f, "negative: read op {op} shows account {account} at {balance}")
            }
            BankAnomaly::WrongAccounts { op, missing, extra } => {
                write!(f, "wrong-accounts: read op {op} is missing {missing:?} and has extra {extra:?}")
            }
        }
    }
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankReport {
    /// `Ok` reads examined.
    pub reads_checked: usize,
    /// Reads with at least one anomaly.
    pub bad_reads: usize,
    /// The anomalies of the first `max_reported` bad reads, in input order.
    pub anomalies: Vec<BankAnomaly>,
}

impl BankReport {
    pub fn is_valid(&self) -> bool {
        self.bad_reads == 0
    }
}

/// Checks every `Ok` read against `config`.
pub fn check(reads: &[BankRead], config: &BankConfig) -> BankReport {
    let mut report = BankReport::default();
    for read in reads.iter().filter(|r| r.kind == OpKind::Ok) {
        report.reads_checked += 1;
        let found = check_read(read, config);
        if found.is_empty() {
            continue;
        }
        if report.bad_reads < config.max_reported {
            report.anomalies.extend(found);
        }
        report.bad_reads += 1;
    }
    report
}

fn check_read(read: &BankRead, config: &BankConfig) -> Vec<BankAnomaly> {
    let mut found = Vec::new();
    let op = read.id;
    if !config.accounts.is_empty() {
        let missing: Vec<u64> = config.accounts.iter().filter(|a| !read.balances.contains_key(a)).copied().collect();
        let extra: Vec<u64> = read.balances.keys().filter(|a| !config.accounts.contains(a)).copied().collect();
        if !missing.is_empty() || !extra.is_empty() {
            found.push(BankAnomaly::WrongAccounts { op, missing, extra });
        }
    }
    let actual: i128 = read.balances.values().map(|&b| i128::from(b)).sum();
    if actual != i128::from(config.total) {
        found.push(BankAnomaly::WrongTotal { op, expected: config.total, actual });
    }
    if !config.allow_negative {
        let negative = read.balances.iter().filter(|(_, &balance)| balance < 0);
        found.extend(negative.map(|(&account, &balance)| BankAnomaly::Negative { op, account, balance }));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(id: usize, kind: OpKind, balances: &[(u64, i64)]) -> BankRead {
        BankRead { id, kind, balances: balances.iter().copied().collect() }
    }

    fn config() -> BankConfig {
        BankConfig { total: 100, accounts: vec![1, 2], allow_negative: false, max_reported: 2 }
    }

    #[test]
    fn conserved_totals_pass() {
        let reads = [
            read(1, OpKind::Ok, &[(1, 50), (2, 50)]),
            read(2, OpKind::Ok, &[(1, 0), (2, 100)]),
            read(3, OpKind::Info, &[]),
        ];
        let report = check(&reads, &config());
        assert!(report.is_valid(), "{:?}", report.anomalies);
        assert_eq!(report.reads_checked, 2);
    }

    #[test]
    fn offending_reads_are_reported_up_to_the_limit() {
        let reads = [
            read(1, OpKind::Ok, &[(1, 60), (2, 50)]),
            read(2, OpKind::Ok, &[(1, -10), (2, 110)]),
            read(3, OpKind::Ok, &[(1, 100), (3, 0)]),
            read(4, OpKind::Ok, &[(1, i64::MAX), (2, i64::MAX)]),
        ];
        let report = check(&reads, &config());
        assert_eq!(report.bad_reads, 4);
        assert_eq!(
            report.anomalies,
            [
                BankAnomaly::WrongTotal { op: 1, expected: 100, actual: 110 },
                BankAnomaly::Negative { op: 2, account: 1, balance: -10 },
            ]
        );
        assert!(report.anomalies.iter().all(|a| !a.to_string().is_empty()));
    }

    #[test]
    fn overdrafts_and_account_sets_are_configurable() {
        let lenient = BankConfig { allow_negative: true, accounts: vec![], ..config() };
        assert!(check(&[read(1, OpKind::Ok, &[(1, -10), (2, 110)])], &lenient).is_valid());
        let report = check(&[read(1, OpKind::Ok, &[(1, 100), (3, 0)])], &config());
        assert_eq!(report.anomalies, [BankAnomaly::WrongAccounts { op: 1, missing: vec![2], extra: vec![3] }]);
    }
}
