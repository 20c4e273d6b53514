//! The DataFusion session settings of every plan OrdoDB makes, so that the
//! slow path reads SQL as PostgreSQL does — and as the fast path
//! ([`crate::fast`]) does, which the same statement takes or not depending
//! on its shape (`expr/tests/fast_vs_datafusion.rs` checks they agree).

use datafusion::config::Dialect;
use datafusion::prelude::{SessionConfig, SessionContext};

/// One partition, PostgreSQL's dialect, and `1.1` as NUMERIC rather than a
/// float (DataFusion's default would make `bal * 1.1` inexact).
pub fn config() -> SessionConfig {
    let mut cfg = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
    let parser = &mut cfg.options_mut().sql_parser;
    parser.dialect = Dialect::PostgreSQL;
    parser.parse_float_as_decimal = true;
    cfg
}

/// A context with [`config`] and OrdoDB's rules (see [`install`]).
pub fn context() -> SessionContext {
    let ctx = SessionContext::new_with_config(config());
    install(&ctx);
    ctx
}

/// Adds OrdoDB's analyzer rules to `ctx`: checked integer arithmetic
/// ([`crate::checked`]), after DataFusion's type coercion.
pub fn install(ctx: &SessionContext) {
    ctx.add_analyzer_rule(std::sync::Arc::new(crate::checked::CheckedIntegerArithmetic));
}
