//! Differential check of the fast path (`ordo_expr::fast`) against
//! DataFusion, the slow path a statement takes when the fast path does not
//! cover it: random expressions over a row of integers, NUMERIC, text and
//! NULLs, evaluated both ways, must give the same value, or both an error.
//! The same expression may run either way depending on the shape of the
//! statement around it, so any difference is a wrong answer somewhere.

use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use ordo_expr::arrow::{input_at, rows_to_batch, table_schema};
use ordo_expr::coerce::Input;
use ordo_expr::fast::{compile, val_input, EvalError};
use ordo_expr::parse::parse_expr;
use ordo_meta::catalog::{ColumnDef, SqlType, TableDef};
use ordo_meta::datum::Datum;
use proptest::prelude::*;

/// `t (id INT, n BIGINT, bal NUMERIC(12,2), name TEXT)`, all nullable.
fn table() -> TableDef {
    let types = [
        ("id", SqlType::Int),
        ("n", SqlType::BigInt),
        ("bal", SqlType::Numeric { precision: 12, scale: 2 }),
        ("name", SqlType::Text),
    ];
    let columns = types.into_iter().map(|(name, ty)| ColumnDef { name: name.into(), ty, nullable: true }).collect();
    TableDef { id: 1, name: "t".into(), columns, primary_key: vec![0], partition_len: 1 }
}

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

/// The value both sides agree on, written out: numbers by value whatever
/// their type and scale.
fn canonical(i: &Input) -> String {
    match i {
        Input::Null => "NULL".into(),
        Input::Int(v) => v.to_string(),
        Input::Number(s) if s.contains('.') => {
            let t = s.trim_end_matches('0').trim_end_matches('.');
            if t == "-0" || t.is_empty() {
                "0".into()
            } else {
                t.to_string()
            }
        }
        Input::Number(s) => s.clone(),
        Input::Float(f) => format!("float {f}"),
        Input::Text(s) => format!("'{s}'"),
        Input::Bool(b) => b.to_string(),
        Input::Datum(d) => format!("{d:?}"),
    }
}

/// The fast path's answer: `None` when it does not cover the expression.
fn fast(sql: &str, table: &TableDef, row: &[Datum]) -> Option<Result<String, String>> {
    let expr = parse_expr(sql).ok()?;
    let compiled = compile(&expr, table, &[])?;
    match compiled.eval(row, table) {
        Ok(v) => Some(Ok(canonical(&val_input(v)))),
        Err(EvalError::Sql(e)) => Some(Err(e.to_string())),
        Err(EvalError::Unsupported) => None,
    }
}

async fn slow(ctx: &SessionContext, sql: &str) -> Result<String, String> {
    let df = ctx.sql(&format!("SELECT {sql} FROM t")).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or("no row")?;
    input_at(batch.column(0).as_ref(), 0).map(|i| canonical(&i)).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_path_agrees_with_datafusion(sql in expression(), row in row()) {
        let table = table();
        let Some(fast) = fast(&sql, &table, &row) else { return Ok(()) };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let slow = rt.block_on(async {
            let ctx = ordo_expr::session::context();
            let schema = table_schema(&table);
            let batch = rows_to_batch(&table, &schema, std::slice::from_ref(&row)).unwrap();
            let mem = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
            ctx.register_table("t", Arc::new(mem)).unwrap();
            slow(&ctx, &sql).await
        });
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{} over {:?}", sql, row),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{} over {:?}: fast {:?}, DataFusion {:?}", sql, row, fast, slow),
        }
    }
}
