//! The determinism rule at the SQL edge: a write or a transaction may not
//! call a function whose value differs from one call to the next
//! (`random()`, `gen_random_uuid()`, `clock_timestamp()`...).
//!
//! Replicas apply logged effects and would agree anyway; the rule is what
//! makes a transaction a function of its input and the data, so the same
//! workload gives the same database, run after run (and so a replay or an
//! Elle-style checker can reason about it). `now()` and its synonyms are
//! allowed: in a transaction they are its epoch's timestamp. A client that
//! needs a random value or a UUID sends it as a parameter.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{visit_expressions, Expr, Statement};
use ordo_expr::{ExecError, ExecResult};

/// Functions whose result is not fixed by their arguments and the data.
const VOLATILE_FUNCTIONS: [&str; 6] = ["random", "setseed", "uuid", "gen_random_uuid", "clock_timestamp", "timeofday"];

/// Functions that read the clock and are not rewritten to the
/// transaction's timestamp as `now()` is: each participant would read its
/// own clock.
const CLOCK_FUNCTIONS: [&str; 3] = ["current_date", "current_time", "localtime"];

pub(crate) fn refuse_volatile(st: &Statement) -> ExecResult<()> {
    let mut found = None;
    let _ = visit_expressions(st, |e| {
        if let Expr::Function(f) = e {
            let name = f.name.0.last().map(|p| p.to_string().to_lowercase()).unwrap_or_default();
            if VOLATILE_FUNCTIONS.contains(&name.as_str()) || CLOCK_FUNCTIONS.contains(&name.as_str()) {
                found = Some(name);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    match found {
        Some(name) if CLOCK_FUNCTIONS.contains(&name.as_str()) => Err(ExecError::FeatureNotSupported(format!(
            "{name} reads the clock and cannot be used in a write or a transaction; use CAST(now() AS DATE) (the transaction's timestamp) or pass its value as a parameter"
        ))),
        Some(name) => Err(ExecError::FeatureNotSupported(format!(
            "{name}() is not deterministic and cannot be used in a write or a transaction; pass its value as a parameter"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn check(sql: &str) -> ExecResult<()> {
        let st = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        refuse_volatile(&st)
    }

    #[test]
    fn volatile_functions_are_refused_wherever_they_appear() {
        for sql in [
            "INSERT INTO t VALUES (1, random())",
            "UPDATE t SET v = v + RANDOM() * 10 WHERE id = 1",
            "DELETE FROM t WHERE v < random()",
            "SELECT gen_random_uuid()",
            "INSERT INTO t VALUES (1, CASE WHEN clock_timestamp() > now() THEN 1 ELSE 0 END)",
        ] {
            let e = check(sql).expect_err(sql);
            assert_eq!(e.sqlstate(), "0A000", "{sql}");
            assert!(e.to_string().contains("not deterministic"), "{sql}: {e}");
        }
    }

    #[test]
    fn clock_functions_other_than_now_are_refused() {
        for sql in [
            "UPDATE t SET v = 1 WHERE d < current_date",
            "INSERT INTO t VALUES (1, CURRENT_TIME)",
            "DELETE FROM t WHERE x = localtime",
        ] {
            let e = check(sql).expect_err(sql);
            assert_eq!(e.sqlstate(), "0A000", "{sql}");
            assert!(e.to_string().contains("reads the clock"), "{sql}: {e}");
        }
    }

    #[test]
    fn deterministic_functions_and_now_pass() {
        for sql in ["INSERT INTO t VALUES (1, now())", "UPDATE t SET v = abs(v) + length('x') WHERE id = 1", "SELECT 1"]
        {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}
