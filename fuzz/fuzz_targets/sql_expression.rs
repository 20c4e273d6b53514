//! Arbitrary text as a SQL expression: the depth bound and the parser never
//! panic, and where the fast path evaluates it, DataFusion (the path the
//! same expression takes in other statements) gives the same value, or
//! both fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_meta::datum::Datum;

#[path = "../../expr/tests/common/differential.rs"]
mod differential;

fuzz_target!(|bytes: &[u8]| {
    let Ok(sql) = std::str::from_utf8(bytes) else { return };
    if ordo_expr::depth::check_depth(sql).is_err() {
        return;
    }
    let table = differential::table();
    let row = vec![Datum::Int(7), Datum::Int(-3), Datum::Decimal(12_345), Datum::Text("ab".into())];
    let Some(fast) = differential::fast(sql, &table, &row) else { return };
    let slow = differential::slow(sql, &table, &row);
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{sql}"),
        (Err(_), Err(_)) => {}
        _ => panic!("{sql}: fast {fast:?}, DataFusion {slow:?}"),
    }
});
