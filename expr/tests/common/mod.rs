pub mod differential;
