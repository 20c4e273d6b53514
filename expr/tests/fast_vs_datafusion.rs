//! Differential check of the fast path (`ordo_expr::fast`) against
//! DataFusion, the slow path a statement takes when the fast path does not
//! cover it: random expressions over a row of integers, NUMERIC, text and
//! NULLs, evaluated both ways, must give the same value, or both an error.
//! The same expression may run either way depending on the shape of the
//! statement around it, so any difference is a wrong answer somewhere.

mod common;

use common::differential::{fast, slow, table};
use ordo_meta::datum::Datum;
use proptest::prelude::*;

/// A numeric expression (SQL text).
fn num() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("id".to_string()),
        Just("n".to_string()),
        Just("bal".to_string()),
        (-1000i64..1000).prop_map(|v| v.to_string()),
        prop_oneof![Just(i64::MAX), Just(4_000_000_000i64), Just(3_037_000_500i64)].prop_map(|v| v.to_string()),
        (-100_000i64..100_000, 1u32..4).prop_map(|(v, s)| decimal(v, s)),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), prop_oneof![Just("+"), Just("-"), Just("*")], inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("(-({a}))")),
            (boolean_leaf(), inner.clone(), inner).prop_map(|(c, a, b)| format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
        ]
    })
}

fn decimal(v: i64, scale: u32) -> String {
    let digits = format!("{:0>width$}", v.unsigned_abs(), width = scale as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

fn boolean_leaf() -> impl Strategy<Value = String> {
    let cmp = prop_oneof![Just("="), Just("<>"), Just("<"), Just("<="), Just(">"), Just(">=")];
    prop_oneof![
        (prop_oneof![Just("id"), Just("n"), Just("bal")], cmp.clone(), -5i64..5)
            .prop_map(|(c, op, v)| format!("{c} {op} {v}")),
        (prop_oneof![Just("name")], cmp, prop_oneof![Just("'a'"), Just("'b'"), Just("''")])
            .prop_map(|(c, op, v)| format!("{c} {op} {v}")),
        prop_oneof![Just("bal IS NULL"), Just("name IS NOT NULL")].prop_map(str::to_string),
    ]
}

/// Any expression: numeric, comparisons of numerics, boolean logic, text.
fn expression() -> impl Strategy<Value = String> {
    let cmp = prop_oneof![Just("="), Just("<>"), Just("<"), Just(">=")];
    prop_oneof![
        3 => num(),
        1 => (num(), cmp, num()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        1 => (boolean_leaf(), prop_oneof![Just("AND"), Just("OR")], boolean_leaf())
            .prop_map(|(a, op, b)| format!("NOT ({a} {op} {b})")),
        1 => prop_oneof![Just("name || 'x'"), Just("name || name"), Just("'p' || name")].prop_map(str::to_string),
    ]
}

fn row() -> impl Strategy<Value = Vec<Datum>> {
    let nullable = |s: BoxedStrategy<Datum>| prop_oneof![1 => Just(Datum::Null), 6 => s];
    (
        prop_oneof![4 => -100i64..100, 1 => prop_oneof![Just(50_000i64), Just(i32::MAX as i64)]].prop_map(Datum::Int),
        nullable(prop_oneof![(-1000i64..1000).prop_map(Datum::Int), Just(Datum::Int(i64::MAX))].boxed()),
        nullable((-10_000_000i128..10_000_000).prop_map(Datum::Decimal).boxed()),
        nullable(prop_oneof![Just("a"), Just("b"), Just(""), Just("zz")].prop_map(|s| Datum::Text(s.into())).boxed()),
    )
        .prop_map(|(a, b, c, d)| vec![a, b, c, d])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_path_agrees_with_datafusion(sql in expression(), row in row()) {
        let table = table();
        let Some(fast) = fast(&sql, &table, &row) else { return Ok(()) };
        let slow = slow(&sql, &table, &row);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{} over {:?}", sql, row),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{} over {:?}: fast {:?}, DataFusion {:?}", sql, row, fast, slow),
        }
    }
}

/// `SUM` of an integer column over rows whose running total leaves BIGINT
/// and comes back: both paths give the exact sum, and both refuse (22003)
/// only a sum that is outside BIGINT itself.
#[test]
fn integer_sums_agree_and_fail_only_outside_bigint() {
    use datafusion::catalog::MemTable;
    use ordo_expr::arrow::{input_at, rows_to_batch, table_schema};
    use ordo_expr::select::{evaluate, Agg};

    let table = table();
    let row = |n: i64| vec![Datum::Int(n), Datum::Int(n), Datum::Null, Datum::Null];
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (values, want) in [
        (vec![i64::MAX, 1, -1], Ok(i64::MAX)),
        (vec![i64::MAX, 1, -1, i64::MAX, -i64::MAX, -i64::MAX, 5], Ok(5)),
        (vec![i64::MAX, 1], Err(())),
        (vec![i64::MIN, -1, 3, -3], Err(())),
    ] {
        let rows: Vec<Vec<Datum>> = values.iter().map(|&v| row(v)).collect();
        let refs: Vec<&Vec<Datum>> = rows.iter().collect();
        let fast = match evaluate(Agg::Sum(1), &refs, &table) {
            Ok(Some(ordo_expr::Param::Int(i))) => Ok(i),
            Ok(other) => panic!("fast path gave {other:?}"),
            Err(e) => {
                assert_eq!(e.sqlstate(), "22003", "{e}");
                Err(())
            }
        };
        let slow = rt.block_on(async {
            let ctx = ordo_expr::session::context();
            let schema = table_schema(&table);
            let batch = rows_to_batch(&table, &schema, &rows).unwrap();
            ctx.register_table("t", std::sync::Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()))
                .unwrap();
            match ctx.sql("SELECT sum(n) FROM t").await.unwrap().collect().await {
                Ok(b) => Ok(input_at(b[0].column(0).as_ref(), 0).unwrap()),
                Err(e) => {
                    assert_eq!(ordo_expr::error::from_datafusion(e).sqlstate(), "22003");
                    Err(())
                }
            }
        });
        let slow = slow.map(|i| match i {
            ordo_expr::coerce::Input::Int(i) => i,
            other => panic!("DataFusion gave {other:?}"),
        });
        assert_eq!(fast, want, "fast path over {values:?}");
        assert_eq!(slow, want, "DataFusion over {values:?}");
    }
}
