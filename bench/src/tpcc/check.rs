//! Consistency conditions of clause 3.3.2, checked per warehouse with
//! plain queries every target answers alike, compared in Rust:
//!
//! 1. W_YTD = sum(D_YTD) of its districts;
//! 2. D_NEXT_O_ID - 1 = max(O_ID) = max(NO_O_ID) per district;
//! 3. max(NO_O_ID) - min(NO_O_ID) + 1 = count of NEW-ORDER rows per district;
//! 4. sum(O_OL_CNT) = count of ORDER-LINE rows per district;
//!
//! plus W_YTD = sum(H_AMOUNT) per warehouse and D_YTD = sum(H_AMOUNT) per
//! district (the history rows a warehouse's payments wrote).

use std::collections::BTreeMap;

use super::db::TpccSession;

/// One failed condition.
#[derive(Debug, Clone)]
pub struct Violation(pub String);

type Rows = Vec<Vec<Option<String>>>;

fn int(v: &Option<String>) -> Option<i64> {
    v.as_deref()?.parse().ok()
}

/// A NUMERIC's text as an exact count of 1/10000ths.
fn fixed(v: &Option<String>) -> Option<i128> {
    super::load::parse_decimal(v.as_deref()?, 4)
}

/// Per-district values of a `GROUP BY district` query: first column the
/// district, the rest as given.
fn by_district(rows: &Rows) -> BTreeMap<i64, Vec<Option<String>>> {
    rows.iter().filter_map(|r| Some((int(r.first()?)?, r[1..].to_vec()))).collect()
}

/// Checks warehouses `1..=warehouses`; returns every violation found.
pub async fn check(s: &mut dyn TpccSession, warehouses: i64) -> anyhow::Result<Vec<Violation>> {
    let mut out = Vec::new();
    for w in 1..=warehouses {
        let q = |sql: String| sql;
        let wh = s.query(&q(format!("SELECT w_ytd FROM warehouse WHERE w_id = {w}"))).await?;
        let w_ytd = wh.first().and_then(|r| fixed(&r[0]));
        let dist =
            by_district(&s.query(&format!("SELECT d_id, d_ytd, d_next_o_id FROM district WHERE d_w_id = {w}")).await?);
        let orders = by_district(
            &s.query(&format!(
                "SELECT o_d_id, MAX(o_id), SUM(o_ol_cnt) FROM orders WHERE o_w_id = {w} GROUP BY o_d_id"
            ))
            .await?,
        );
        let news = by_district(
            &s.query(&format!(
                "SELECT no_d_id, MAX(no_o_id), MIN(no_o_id), COUNT(*) FROM new_order WHERE no_w_id = {w} GROUP BY no_d_id"
            ))
            .await?,
        );
        let lines = by_district(
            &s.query(&format!("SELECT ol_d_id, COUNT(*) FROM order_line WHERE ol_w_id = {w} GROUP BY ol_d_id")).await?,
        );
        let history = by_district(
            &s.query(&format!("SELECT h_d_id, SUM(h_amount) FROM history WHERE h_w_id = {w} GROUP BY h_d_id")).await?,
        );

        let mut bad = |what: String| out.push(Violation(format!("warehouse {w}: {what}")));
        let d_ytd_sum: Option<i128> = dist.values().map(|r| fixed(&r[0])).sum();
        if w_ytd.is_none() || w_ytd != d_ytd_sum {
            bad(format!("1: W_YTD {w_ytd:?} != sum(D_YTD) {d_ytd_sum:?}"));
        }
        let h_sum: Option<i128> = history.values().map(|r| fixed(&r[0])).sum();
        if w_ytd != h_sum {
            bad(format!("W_YTD {w_ytd:?} != sum(H_AMOUNT) {h_sum:?}"));
        }
        if dist.len() != super::DISTRICTS_PER_WAREHOUSE as usize {
            bad(format!("{} districts", dist.len()));
        }
        for (d, r) in &dist {
            let next = int(&r[1]);
            let max_o = orders.get(d).and_then(|o| int(&o[0]));
            let news_d = news.get(d);
            let max_no = news_d.and_then(|n| int(&n[0]));
            let min_no = news_d.and_then(|n| int(&n[1]));
            let count_no = news_d.and_then(|n| int(&n[2])).unwrap_or(0);
            if next.map(|n| n - 1) != max_o || (news_d.is_some() && max_no != max_o) {
                bad(format!("2: district {d}: D_NEXT_O_ID {next:?} - 1, max(O_ID) {max_o:?}, max(NO_O_ID) {max_no:?}"));
            }
            if let (Some(hi), Some(lo)) = (max_no, min_no) {
                if hi - lo + 1 != count_no {
                    bad(format!("3: district {d}: max(NO_O_ID) {hi} - min {lo} + 1 != {count_no} rows"));
                }
            }
            let ol_cnt = orders.get(d).and_then(|o| int(&o[1]));
            let ol_rows = lines.get(d).and_then(|l| int(&l[0]));
            if ol_cnt != ol_rows {
                bad(format!("4: district {d}: sum(O_OL_CNT) {ol_cnt:?} != {ol_rows:?} order lines"));
            }
            let d_ytd = fixed(&r[0]);
            let h = history.get(d).and_then(|h| fixed(&h[0]));
            if d_ytd != h {
                bad(format!("district {d}: D_YTD {d_ytd:?} != sum(H_AMOUNT) {h:?}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_text_is_read_exactly() {
        assert_eq!(fixed(&Some("300000.00".into())), Some(3_000_000_000));
        assert_eq!(fixed(&Some("-10.5".into())), Some(-105_000));
        assert_eq!(fixed(&Some("7".into())), Some(70_000));
        assert_eq!(fixed(&Some("1.23456".into())), None);
        assert_eq!(fixed(&Some("1.2x".into())), None);
        assert_eq!(super::super::load::parse_decimal("12.5", 2), Some(1250));
        assert_eq!(fixed(&None), None);
    }
}
