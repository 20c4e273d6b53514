//! Every limit of expression handling, defined once, with its unit last.

/// Deepest expression nesting a statement may have (see [`crate::depth`]):
/// well within what the recursive walks of the parser, DataFusion and our
/// evaluation fit in a worker thread's stack (`ordo_expr` is run on the
/// node's runtime threads, whose stack the node sets).
pub const EXPRESSION_DEPTH_MAX: usize = 1_000;
