//! The nine TPC-C tables (clause 1.3) in each target's dialect.
//!
//! OrdoDB: every table's primary key starts with its warehouse and is
//! `PARTITION BY` it, so a warehouse's rows share one vShard and most
//! transactions touch one vShard. ITEM is the exception in the
//! specification (it has no warehouse); OrdoDB keeps one copy of it per
//! warehouse, keyed (i_w_id, i_id), so New-Order reads its items locally.
//! Replicated reference tables would be the real answer.
//! HISTORY has no key in the specification; both dialects give it
//! (h_w_id, h_id) with a client-generated h_id.
//!
//! OrdoDB has no secondary indexes yet, so its dialect adds the index
//! PostgreSQL gets with `CREATE INDEX` as a table: CUSTOMER_BY_NAME
//! (c_w_id, c_d_id, c_last, c_first, c_id), loaded with the customers.
//! Names never change, so it needs no maintenance; lookups by last name
//! read the few matching rows instead of the district's 3000 customers.

/// Which SQL a target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Ordo,
    Postgres,
}

/// Tables in load order; dropped in reverse.
pub const TABLES: [&str; 10] = [
    "warehouse",
    "district",
    "customer",
    "history",
    "new_order",
    "orders",
    "order_line",
    "item",
    "stock",
    "customer_by_name",
];

/// CREATE TABLE statements. Longer than our ~70-line rule on purpose: the
/// whole TPC-C schema (clause 1.3) in one place, one statement per table.
pub fn create_tables(d: Dialect) -> Vec<String> {
    let part = |col: &str| match d {
        Dialect::Ordo => format!(" PARTITION BY ({col})"),
        Dialect::Postgres => String::new(),
    };
    let item = match d {
        Dialect::Ordo => "CREATE TABLE item (i_w_id INT NOT NULL, i_id INT NOT NULL, i_im_id INT, i_name VARCHAR(24), \
             i_price NUMERIC(5,2), i_data VARCHAR(50), PRIMARY KEY (i_w_id, i_id)) PARTITION BY (i_w_id)"
            .to_string(),
        Dialect::Postgres => "CREATE TABLE item (i_id INT NOT NULL, i_im_id INT, i_name VARCHAR(24), \
             i_price NUMERIC(5,2), i_data VARCHAR(50), PRIMARY KEY (i_id))"
            .to_string(),
    };
    let s_dists: String = (1..=10).map(|i| format!("s_dist_{i:02} VARCHAR(24), ")).collect();
    let mut tables = vec![
        format!(
            "CREATE TABLE warehouse (w_id INT NOT NULL, w_name VARCHAR(10), w_street_1 VARCHAR(20), w_street_2 VARCHAR(20), \
             w_city VARCHAR(20), w_state VARCHAR(2), w_zip VARCHAR(9), w_tax NUMERIC(4,4), w_ytd NUMERIC(12,2), \
             PRIMARY KEY (w_id)){}",
            part("w_id")
        ),
        format!(
            "CREATE TABLE district (d_w_id INT NOT NULL, d_id INT NOT NULL, d_name VARCHAR(10), d_street_1 VARCHAR(20), \
             d_street_2 VARCHAR(20), d_city VARCHAR(20), d_state VARCHAR(2), d_zip VARCHAR(9), d_tax NUMERIC(4,4), \
             d_ytd NUMERIC(12,2), d_next_o_id INT, PRIMARY KEY (d_w_id, d_id)){}",
            part("d_w_id")
        ),
        format!(
            "CREATE TABLE customer (c_w_id INT NOT NULL, c_d_id INT NOT NULL, c_id INT NOT NULL, c_first VARCHAR(16), \
             c_middle VARCHAR(2), c_last VARCHAR(16), c_street_1 VARCHAR(20), c_street_2 VARCHAR(20), c_city VARCHAR(20), \
             c_state VARCHAR(2), c_zip VARCHAR(9), c_phone VARCHAR(16), c_since TIMESTAMP, c_credit VARCHAR(2), \
             c_credit_lim NUMERIC(12,2), c_discount NUMERIC(4,4), c_balance NUMERIC(12,2), c_ytd_payment NUMERIC(12,2), \
             c_payment_cnt INT, c_delivery_cnt INT, c_data VARCHAR(500), PRIMARY KEY (c_w_id, c_d_id, c_id)){}",
            part("c_w_id")
        ),
        format!(
            "CREATE TABLE history (h_w_id INT NOT NULL, h_id BIGINT NOT NULL, h_c_id INT, h_c_d_id INT, h_c_w_id INT, \
             h_d_id INT, h_date TIMESTAMP, h_amount NUMERIC(6,2), h_data VARCHAR(24), PRIMARY KEY (h_w_id, h_id)){}",
            part("h_w_id")
        ),
        format!(
            "CREATE TABLE new_order (no_w_id INT NOT NULL, no_d_id INT NOT NULL, no_o_id INT NOT NULL, \
             PRIMARY KEY (no_w_id, no_d_id, no_o_id)){}",
            part("no_w_id")
        ),
        format!(
            "CREATE TABLE orders (o_w_id INT NOT NULL, o_d_id INT NOT NULL, o_id INT NOT NULL, o_c_id INT, \
             o_entry_d TIMESTAMP, o_carrier_id INT, o_ol_cnt INT, o_all_local INT, PRIMARY KEY (o_w_id, o_d_id, o_id)){}",
            part("o_w_id")
        ),
        format!(
            "CREATE TABLE order_line (ol_w_id INT NOT NULL, ol_d_id INT NOT NULL, ol_o_id INT NOT NULL, \
             ol_number INT NOT NULL, ol_i_id INT, ol_supply_w_id INT, ol_delivery_d TIMESTAMP, ol_quantity INT, \
             ol_amount NUMERIC(6,2) NOT NULL, ol_dist_info VARCHAR(24), PRIMARY KEY (ol_w_id, ol_d_id, ol_o_id, ol_number)){}",
            part("ol_w_id")
        ),
        item,
        format!(
            "CREATE TABLE stock (s_w_id INT NOT NULL, s_i_id INT NOT NULL, s_quantity INT, {s_dists}s_ytd INT, \
             s_order_cnt INT, s_remote_cnt INT, s_data VARCHAR(50), PRIMARY KEY (s_w_id, s_i_id)){}",
            part("s_w_id")
        ),
    ];
    if d == Dialect::Ordo {
        tables.push(
            "CREATE TABLE customer_by_name (c_w_id INT NOT NULL, c_d_id INT NOT NULL, c_last VARCHAR(16) NOT NULL, \
             c_first VARCHAR(16) NOT NULL, c_id INT NOT NULL, PRIMARY KEY (c_w_id, c_d_id, c_last, c_first, c_id)) \
             PARTITION BY (c_w_id)"
                .into(),
        );
    }
    tables
}

/// Indexes beyond the primary keys, for lookups the transactions make by
/// other columns (PostgreSQL only: OrdoDB has no secondary indexes yet).
pub fn create_indexes(d: Dialect) -> Vec<String> {
    match d {
        Dialect::Ordo => Vec::new(),
        Dialect::Postgres => vec![
            "CREATE INDEX customer_by_name ON customer (c_w_id, c_d_id, c_last, c_first)".into(),
            "CREATE INDEX orders_by_customer ON orders (o_w_id, o_d_id, o_c_id, o_id)".into(),
        ],
    }
}
